//! `-vv` shows the eBPF programs' own debug messages (aya-log); without it there are none
//! (the loader leaves them disabled, and the verifier drops their code).

use std::time::Duration;

use pytrace_tests::*;

const KERNEL_LINE: &str = "pytrace: kernel: ";

#[test]
fn kernel_messages_only_under_vv() {
    let _serial = serial();
    let interpreters = selected_interpreters().unwrap_or_else(|e| panic!("{e}"));
    each_interpreter(&interpreters[interpreters.len() - 1..], |interp| {
        let mut target = Target::start(interp, "cpu_split.py", &[])?;
        let pid = target.pid().to_string();
        for verbose in ["-v", "-vv"] {
            let run = Pytrace::run(&["dump", "--pid", &pid, verbose], Duration::from_secs(60))?;
            if !run.status.success() {
                return Err(format!("dump {verbose}: {:?}\n{}", run.status, run.stderr));
            }
            let kernel: Vec<&str> = run
                .stderr
                .lines()
                .filter(|l| l.starts_with(KERNEL_LINE))
                .collect();
            let ours = format!("of pid {pid} ");
            match verbose {
                "-v" if !kernel.is_empty() => {
                    return Err(format!("kernel messages without -vv:\n{}", run.stderr))
                }
                "-vv" if !kernel.iter().any(|l| l.contains(&ours)) => {
                    return Err(format!(
                        "no kernel message about the dumped process {pid} under -vv:\n{}",
                        run.stderr
                    ))
                }
                _ => {}
            }
        }
        target.command("exit")?;
        Ok(())
    });
}
