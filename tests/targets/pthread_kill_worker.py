"""Two workers parked in descend() at depths 2 and 5; on "kill SIGNAME" from stdin the main
thread sends that signal to the older worker with signal.pthread_kill, making it current."""
import fhtarget as fh


def descend(spot, levels):
    if levels > 1:
        descend(spot, levels - 1)
    else:
        fh.park(spot)


fh.register()
target = fh.start(descend, 2)
fh.start(descend, 5)
fh.serve_pthread_kill(target)
