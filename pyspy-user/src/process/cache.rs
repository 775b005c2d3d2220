//! A small bounded least-recently-used map, and the identity of a file on disk used as its key
//! for per-file analyses.

use std::collections::HashMap;
use std::fs::Metadata;
use std::hash::Hash;
use std::os::unix::fs::MetadataExt;

/// Identity of a file's content as far as `stat` tells: a file replaced (new inode) or rewritten
/// in place (new size or modification time) gets a new key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
}

impl FileKey {
    pub fn of(meta: &Metadata) -> FileKey {
        FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }
}

/// Counters of a [`Lru`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Values stored (each one computed after a missed lookup).
    pub inserts: u64,
    /// Entries dropped to make room.
    pub evictions: u64,
    /// Entries currently held.
    pub entries: usize,
}

/// A map holding at most `capacity` entries; inserting into a full map evicts the entry used
/// least recently. Eviction scans the entries, which is cheap at the few hundred entries it is
/// meant for.
#[derive(Debug)]
pub struct Lru<K, V> {
    capacity: usize,
    map: HashMap<K, (V, u64)>,
    clock: u64,
    stats: CacheStats,
}

impl<K: Eq + Hash + Clone, V: Clone> Lru<K, V> {
    /// A map of at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        Lru {
            capacity: capacity.max(1),
            map: HashMap::new(),
            clock: 0,
            stats: CacheStats::default(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// The value for `key`, marked as the most recently used.
    pub fn get(&mut self, key: &K) -> Option<V> {
        let now = self.tick();
        let (value, used) = self.map.get_mut(key)?;
        *used = now;
        self.stats.hits += 1;
        Some(value.clone())
    }

    /// Store `value` under `key`, evicting the least recently used entry if the map is full.
    pub fn insert(&mut self, key: K, value: V) {
        let now = self.tick();
        if !self.map.contains_key(&key) && self.map.len() >= self.capacity {
            let oldest = self
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.map.remove(&oldest);
                self.stats.evictions += 1;
            }
        }
        self.map.insert(key, (value, now));
        self.stats.inserts += 1;
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.map.len(),
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used() {
        let mut lru: Lru<u32, &str> = Lru::new(2);
        lru.insert(1, "a");
        lru.insert(2, "b");
        assert_eq!(lru.get(&1), Some("a"));
        lru.insert(3, "c");
        assert_eq!(lru.len(), 2);
        assert_eq!(lru.get(&2), None);
        assert_eq!(lru.get(&1), Some("a"));
        assert_eq!(lru.get(&3), Some("c"));
        lru.insert(3, "d");
        assert_eq!(lru.get(&3), Some("d"));
        assert_eq!(lru.get(&1), Some("a"));
        assert_eq!(
            lru.stats(),
            CacheStats {
                hits: 5,
                inserts: 4,
                evictions: 1,
                entries: 2
            }
        );
    }

    #[test]
    fn bounded() {
        let mut lru: Lru<u32, u32> = Lru::new(16);
        for i in 0..1000 {
            lru.insert(i, i);
            assert!(lru.len() <= 16);
        }
        assert_eq!(lru.stats().evictions, 1000 - 16);
        assert_eq!(lru.get(&999), Some(999));
        assert_eq!(lru.get(&0), None);
        assert_eq!(Lru::<u32, u32>::new(0).capacity(), 1);
    }

    #[test]
    fn file_identity() {
        let dir = std::env::temp_dir().join(format!("pytrace-filekey-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        std::fs::write(&path, b"one").unwrap();
        let first = FileKey::of(&std::fs::metadata(&path).unwrap());
        assert_eq!(first, FileKey::of(&std::fs::metadata(&path).unwrap()));
        std::fs::write(&path, b"three").unwrap();
        let rewritten = FileKey::of(&std::fs::metadata(&path).unwrap());
        assert_ne!(first, rewritten);
        assert_eq!(rewritten.size, 5);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
