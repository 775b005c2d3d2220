//! What the walker needs from its platform, under aya-ebpf's own names: the maps, the helpers
//! and the debug messages. The modules of one capture (`capture`, `walker`, `symbols`, `tlbc`,
//! `read`, `emit`, `counters`, `maps`) import them from here, never from aya-ebpf, so the same
//! walker compiles twice:
//!
//! - for BPF (`target_arch = "bpf"`): aya-ebpf's and aya-log-ebpf's items, re-exported as
//!   they are (the object does not change);
//! - for the host (the `process_vm_readv` path of `pytrace dump`, `host.rs`): shims with the
//!   same names and signatures. Maps are plain memory, the ring buffer is a list of records
//!   the host driver drains, `bpf_loop` is a loop, the clock is `CLOCK_BOOTTIME` (the clock
//!   of `bpf_ktime_get_boot_ns`, so capture times convert alike), the CPU is 0, debug
//!   messages are dropped.
//!
//! The host shims are not thread-safe by themselves: every use of them is made under the host
//! entry's one mutex (`host.rs`), held for the whole of a walk or a map update, as a BPF
//! program owns its CPU's per-CPU maps while it runs.

#[cfg(target_arch = "bpf")]
pub use aya_ebpf::{bindings, helpers, macros, maps, Global};
#[cfg(target_arch = "bpf")]
pub use aya_log_ebpf::debug;

/// `-vv` debug messages: the kernel's are read from the program's log buffer; the host path
/// has no such buffer and prints nothing (its arguments are still evaluated by reference, so
/// the code type-checks as on BPF).
#[cfg(not(target_arch = "bpf"))]
macro_rules! host_debug {
    ($ctx:expr, $fmt:literal $(, $arg:expr)* $(,)?) => {{
        let _ = ($ctx, $(&$arg),*);
    }};
}
#[cfg(not(target_arch = "bpf"))]
pub(crate) use host_debug as debug;

#[cfg(not(target_arch = "bpf"))]
pub use aya_ebpf::{bindings, macros, Global};
#[cfg(not(target_arch = "bpf"))]
pub use host::{helpers, maps};

#[cfg(not(target_arch = "bpf"))]
pub mod host {
    //! The host shims. See the module's header.

    pub mod helpers {
        //! The helpers the walker calls, as the host has them. Those that read kernel memory
        //! or name the current task have no meaning outside the kernel: they fail as a helper
        //! given a bad address does (the host walk never calls them: it reads the target
        //! through `host::ProcessVm`).

        pub use generated::*;

        /// `bpf_get_current_comm`: no current task in user space.
        pub fn bpf_get_current_comm() -> Result<[u8; 16], i32> {
            Err(-libc::EFAULT)
        }

        /// `bpf_probe_read_kernel`: no kernel memory in user space.
        ///
        /// # Safety
        /// None (nothing is read); `unsafe` as the helper it stands for.
        pub unsafe fn bpf_probe_read_kernel<T>(_src: *const T) -> Result<T, i32> {
            Err(-libc::EFAULT)
        }

        /// `bpf_probe_read_user` of the current task: not the target in user space.
        ///
        /// # Safety
        /// None (nothing is read); `unsafe` as the helper it stands for.
        pub unsafe fn bpf_probe_read_user<T>(_src: *const T) -> Result<T, i32> {
            Err(-libc::EFAULT)
        }

        pub mod generated {
            use core::ffi::c_void;

            use aya_ebpf::bindings::task_struct;

            /// The callback `bpf_loop` takes: `(index, ctx) -> 0 to go on, 1 to stop`.
            type LoopCallback = extern "C" fn(u64, *mut c_void) -> i64;

            /// `bpf_loop`: calls `callback_fn(i, callback_ctx)` for i = 0, 1, ... until it
            /// returns 1 or `nr_loops` calls were made; returns the number of calls, as the
            /// kernel does (flags must be 0, as there).
            ///
            /// # Safety
            /// `callback_fn` must be an `extern "C" fn(u64, *mut c_void) -> i64` (what the
            /// verifier checks in the kernel), and `callback_ctx` what it expects.
            pub unsafe fn bpf_loop(
                nr_loops: u32,
                callback_fn: *mut c_void,
                callback_ctx: *mut c_void,
                flags: u64,
            ) -> i64 {
                if flags != 0 || callback_fn.is_null() {
                    return -(libc::EINVAL as i64);
                }
                // SAFETY: the caller passes a function of this signature, cast to a pointer
                // (the only way bpf_loop takes one).
                let callback: LoopCallback = unsafe { core::mem::transmute(callback_fn) };
                let mut calls = 0i64;
                for i in 0..nr_loops {
                    calls += 1;
                    if callback(i as u64, callback_ctx) != 0 {
                        break;
                    }
                }
                calls
            }

            /// `bpf_ktime_get_boot_ns`: `CLOCK_BOOTTIME`, the clock the kernel helper reads.
            ///
            /// # Safety
            /// None; `unsafe` as the helper it stands for.
            pub unsafe fn bpf_ktime_get_boot_ns() -> u64 {
                let mut ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: a valid pointer to a timespec; CLOCK_BOOTTIME always exists on Linux.
                unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
                ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
            }

            /// `bpf_get_smp_processor_id`: the host walk has one "CPU", 0.
            ///
            /// # Safety
            /// None; `unsafe` as the helper it stands for.
            pub unsafe fn bpf_get_smp_processor_id() -> u32 {
                0
            }

            /// `bpf_get_current_task`: no task in user space (0, never dereferenced: kernel
            /// reads fail here).
            ///
            /// # Safety
            /// None; `unsafe` as the helper it stands for.
            pub unsafe fn bpf_get_current_task() -> u64 {
                0
            }

            /// `bpf_probe_read_user` of the current task: not the target in user space.
            ///
            /// # Safety
            /// None (nothing is read); `unsafe` as the helper it stands for.
            pub unsafe fn bpf_probe_read_user(
                _dst: *mut c_void,
                _size: u32,
                _unsafe_ptr: *const c_void,
            ) -> i64 {
                -(libc::EFAULT as i64)
            }

            /// `bpf_copy_from_user_task`: no task in user space (the host walk reads through
            /// `process_vm_readv` instead).
            ///
            /// # Safety
            /// None (nothing is read); `unsafe` as the helper it stands for.
            pub unsafe fn bpf_copy_from_user_task(
                _dst: *mut c_void,
                _size: u32,
                _user_ptr: *const c_void,
                _tsk: *mut task_struct,
                _flags: u64,
            ) -> i64 {
                -(libc::EFAULT as i64)
            }
        }
    }

    pub mod maps {
        //! The maps the walker uses, as plain memory. Values start zeroed, as the kernel's
        //! do; every value type the walker keeps in a map is plain old data (`#[repr(C)]`
        //! integers and arrays), for which all-zero bytes are a valid value.
        use core::{borrow::Borrow, cell::UnsafeCell, marker::PhantomData, mem::size_of};
        use std::collections::BTreeMap;

        /// `BPF_NOEXIST`, `BPF_EXIST`: `insert` flags.
        const BPF_NOEXIST: u64 = 1;
        const BPF_EXIST: u64 = 2;

        /// A zeroed value of a plain-old-data map type.
        fn zeroed<T>() -> T {
            // SAFETY: map value types are plain old data (module header): all-zero bytes are
            // a valid value, as the kernel's zero-filled map memory is.
            unsafe { core::mem::zeroed() }
        }

        /// An array map, one slot per index, each zeroed at first use. One CPU on the host,
        /// so the per-CPU array is the same.
        pub struct Array<T> {
            max_entries: u32,
            slots: UnsafeCell<Vec<Box<T>>>,
        }

        pub type PerCpuArray<T> = Array<T>;

        // SAFETY: used only under the host entry's mutex (`host.rs`; this module's header).
        unsafe impl<T> Sync for Array<T> {}

        impl<T> Array<T> {
            pub const fn with_max_entries(max_entries: u32, _flags: u32) -> Self {
                Array {
                    max_entries,
                    slots: UnsafeCell::new(Vec::new()),
                }
            }

            pub fn get(&self, index: u32) -> Option<&T> {
                // SAFETY: a slot's box is never freed or moved while the map lives.
                self.get_ptr(index).map(|p| unsafe { &*p })
            }

            pub fn get_ptr(&self, index: u32) -> Option<*const T> {
                self.get_ptr_mut(index).map(|p| p as *const T)
            }

            pub fn get_ptr_mut(&self, index: u32) -> Option<*mut T> {
                if index >= self.max_entries {
                    return None;
                }
                // SAFETY: only under the host entry's mutex, and no reference into the vector
                // itself outlives this call (values are boxed: their addresses stay put, as a
                // BPF map value's does).
                let slots = unsafe { &mut *self.slots.get() };
                while slots.len() < self.max_entries as usize {
                    slots.push(Box::new(zeroed()));
                }
                Some(&mut *slots[index as usize] as *mut T)
            }

            pub fn set(&self, index: u32, value: impl Borrow<T>, _flags: u64) -> Result<(), i32>
            where
                T: Copy,
            {
                let slot = self.get_ptr_mut(index).ok_or(-libc::E2BIG)?;
                // SAFETY: a valid slot, under the host entry's mutex.
                unsafe { *slot = *value.borrow() };
                Ok(())
            }
        }

        /// A hash map (keys compared as bytes, as the kernel does). `LRU` maps make room by
        /// dropping an entry when full (the kernel drops the least recently used; any entry is
        /// correct for the caches the walker keeps in them); others refuse the insert.
        pub struct Hash<K, V, const LRU: bool> {
            max_entries: u32,
            entries: UnsafeCell<BTreeMap<Vec<u8>, Box<V>>>,
            _k: PhantomData<K>,
        }

        pub type HashMap<K, V> = Hash<K, V, false>;
        pub type LruHashMap<K, V> = Hash<K, V, true>;

        // SAFETY: used only under the host entry's mutex (`host.rs`; this module's header).
        unsafe impl<K, V, const LRU: bool> Sync for Hash<K, V, LRU> {}

        /// A key's bytes. Key types are `#[repr(C)]` integers with explicit padding fields, so
        /// every byte is initialised.
        fn key_bytes<K>(key: &K) -> Vec<u8> {
            // SAFETY: `key` is valid for `size_of::<K>()` bytes, all initialised (above).
            unsafe { core::slice::from_raw_parts(key as *const K as *const u8, size_of::<K>()) }
                .to_vec()
        }

        impl<K, V: Copy, const LRU: bool> Hash<K, V, LRU> {
            pub const fn with_max_entries(max_entries: u32, _flags: u32) -> Self {
                Hash {
                    max_entries,
                    entries: UnsafeCell::new(BTreeMap::new()),
                    _k: PhantomData,
                }
            }

            #[allow(clippy::mut_from_ref)]
            fn entries(&self) -> &mut BTreeMap<Vec<u8>, Box<V>> {
                // SAFETY: only under the host entry's mutex; callers keep no two of these at once.
                unsafe { &mut *self.entries.get() }
            }

            /// # Safety
            /// As aya-ebpf's: the value may be changed or removed while the reference lives.
            pub unsafe fn get(&self, key: impl Borrow<K>) -> Option<&V> {
                // SAFETY: a value's box stays put until it is removed (the caller's contract).
                self.get_ptr(key).map(|p| unsafe { &*p })
            }

            pub fn get_ptr(&self, key: impl Borrow<K>) -> Option<*const V> {
                self.get_ptr_mut(key).map(|p| p as *const V)
            }

            pub fn get_ptr_mut(&self, key: impl Borrow<K>) -> Option<*mut V> {
                self.entries()
                    .get_mut(&key_bytes(key.borrow()))
                    .map(|v| &mut **v as *mut V)
            }

            pub fn insert(
                &self,
                key: impl Borrow<K>,
                value: impl Borrow<V>,
                flags: u64,
            ) -> Result<(), i32> {
                let key = key_bytes(key.borrow());
                let entries = self.entries();
                let exists = entries.contains_key(&key);
                if flags == BPF_NOEXIST && exists {
                    return Err(-libc::EEXIST);
                }
                if flags == BPF_EXIST && !exists {
                    return Err(-libc::ENOENT);
                }
                if let Some(v) = entries.get_mut(&key) {
                    **v = *value.borrow();
                    return Ok(());
                }
                if entries.len() >= self.max_entries as usize {
                    if !LRU {
                        return Err(-libc::E2BIG);
                    }
                    entries.pop_first();
                }
                entries.insert(key, Box::new(*value.borrow()));
                Ok(())
            }

            pub fn remove(&self, key: impl Borrow<K>) -> Result<(), i32> {
                match self.entries().remove(&key_bytes(key.borrow())) {
                    Some(_) => Ok(()),
                    None => Err(-libc::ENOENT),
                }
            }

            /// Host only: forgets every entry.
            pub fn clear(&self) {
                self.entries().clear();
            }
        }

        /// `bpf_ringbuf_query` flag: bytes written and not yet consumed.
        const BPF_RB_AVAIL_DATA: u64 = 0;
        /// The kernel's ring buffer adds an 8-byte header to each record and rounds it up to 8
        /// bytes; the host counts records the same way against the same size.
        const RECORD_HEADER: usize = 8;

        /// The ring buffer: records kept in order until the host driver drains them; a record
        /// that does not fit in `byte_size` is refused (`ringbuf_full`), as in the kernel.
        pub struct RingBuf {
            byte_size: u32,
            records: UnsafeCell<(Vec<Vec<u8>>, usize)>,
        }

        // SAFETY: used only under the host entry's mutex (`host.rs`; this module's header).
        unsafe impl Sync for RingBuf {}

        impl RingBuf {
            pub const fn with_byte_size(byte_size: u32, _flags: u32) -> Self {
                RingBuf {
                    byte_size,
                    records: UnsafeCell::new((Vec::new(), 0)),
                }
            }

            #[allow(clippy::mut_from_ref)]
            fn state(&self) -> &mut (Vec<Vec<u8>>, usize) {
                // SAFETY: only under the host entry's mutex; callers keep no two of these at once.
                unsafe { &mut *self.records.get() }
            }

            /// Appends a copy of `data` (wake-up flags mean nothing here: the driver drains
            /// after the walk).
            pub fn output<T: ?Sized>(&self, data: impl Borrow<T>, _flags: u64) -> Result<(), i32> {
                let data = data.borrow();
                let len = core::mem::size_of_val(data);
                let cost = (len + RECORD_HEADER).next_multiple_of(8);
                let (records, used) = self.state();
                if *used + cost > self.byte_size as usize {
                    return Err(-libc::EAGAIN);
                }
                // SAFETY: `data` is valid for `len` bytes; records are plain old data.
                let bytes =
                    unsafe { core::slice::from_raw_parts(data as *const T as *const u8, len) };
                records.push(bytes.to_vec());
                *used += cost;
                Ok(())
            }

            /// `bpf_ringbuf_query`: only `BPF_RB_AVAIL_DATA` is answered (0 otherwise).
            pub fn query(&self, flags: u64) -> u64 {
                if flags == BPF_RB_AVAIL_DATA {
                    self.state().1 as u64
                } else {
                    0
                }
            }

            /// Host only: takes every record written so far, oldest first.
            pub fn drain(&self) -> Vec<Vec<u8>> {
                let (records, used) = self.state();
                *used = 0;
                core::mem::take(records)
            }
        }

        #[cfg(test)]
        mod tests {
            use super::*;

            #[test]
            fn ring_buffer_keeps_order_and_refuses_what_does_not_fit() {
                let ring = RingBuf::with_byte_size(64, 0);
                assert!(ring.output::<[u8]>(&[1u8, 2, 3][..], 0).is_ok());
                assert_eq!(ring.query(BPF_RB_AVAIL_DATA), 16);
                assert!(ring.output::<[u8]>(&[4u8; 24][..], 0).is_ok());
                assert_eq!(ring.query(BPF_RB_AVAIL_DATA), 48);
                // 17 bytes + header = 32 > 64 - 48.
                assert_eq!(ring.output::<[u8]>(&[5u8; 17][..], 0), Err(-libc::EAGAIN));
                assert!(ring.output::<[u8]>(&[6u8; 8][..], 0).is_ok());
                let drained = ring.drain();
                assert_eq!(drained, vec![vec![1, 2, 3], vec![4; 24], vec![6; 8]]);
                assert_eq!(ring.query(BPF_RB_AVAIL_DATA), 0);
                assert!(ring.drain().is_empty());
            }

            #[test]
            fn hash_map_flags_bounds_and_stable_values() {
                let map: HashMap<u32, u64> = HashMap::with_max_entries(2, 0);
                assert!(map.insert(1, 10, 0).is_ok());
                let p = map.get_ptr_mut(1).unwrap();
                assert_eq!(map.insert(1, 11, BPF_NOEXIST), Err(-libc::EEXIST));
                assert_eq!(map.insert(2, 20, BPF_EXIST), Err(-libc::ENOENT));
                assert!(map.insert(2, 20, 0).is_ok());
                assert_eq!(map.insert(3, 30, 0), Err(-libc::E2BIG));
                assert!(map.insert(1, 12, BPF_EXIST).is_ok());
                // SAFETY: the entry was updated in place, never removed.
                assert_eq!(unsafe { *p }, 12);
                assert!(map.remove(1).is_ok());
                assert!(map.remove(1).is_err());
                let lru: LruHashMap<u32, u64> = LruHashMap::with_max_entries(2, 0);
                for k in 0..5 {
                    assert!(lru.insert(k, k as u64, 0).is_ok());
                }
                assert_eq!(unsafe { lru.get(4) }, Some(&4));
                assert_eq!((0..5).filter(|k| lru.get_ptr(k).is_some()).count(), 2);
            }

            #[test]
            fn arrays_start_zeroed_and_are_bounded() {
                let a: PerCpuArray<[u64; 4]> = PerCpuArray::with_max_entries(2, 0);
                assert_eq!(a.get(1), Some(&[0; 4]));
                assert!(a.get(2).is_none());
                // SAFETY: a valid slot.
                unsafe { (*a.get_ptr_mut(0).unwrap())[3] = 7 };
                assert_eq!(a.get(0), Some(&[0, 0, 0, 7]));
            }

            extern "C" fn count_to_three(i: u64, ctx: *mut core::ffi::c_void) -> i64 {
                // SAFETY: the test passes a `u64`.
                let seen = unsafe { &mut *(ctx as *mut u64) };
                *seen += 1;
                i64::from(i == 2)
            }

            #[test]
            fn bpf_loop_stops_when_told_or_at_its_bound() {
                use crate::platform::helpers::generated::bpf_loop;
                let mut seen = 0u64;
                let ctx = &mut seen as *mut u64 as *mut core::ffi::c_void;
                // SAFETY: the callback has bpf_loop's signature; its context is a u64.
                let calls = unsafe { bpf_loop(10, count_to_three as *mut _, ctx, 0) };
                assert_eq!((calls, seen), (3, 3));
                seen = 0;
                // SAFETY: as above.
                let calls = unsafe { bpf_loop(2, count_to_three as *mut _, ctx, 0) };
                assert_eq!((calls, seen), (2, 2));
                // SAFETY: as above.
                assert!(unsafe { bpf_loop(2, count_to_three as *mut _, ctx, 1) } < 0);
            }
        }
    }
}
