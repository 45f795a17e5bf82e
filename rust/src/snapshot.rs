//! Transaction visibility in a `pg_snapshot` (xmin, xmax, xip): decides which events the
//! initial copy of a table already contains.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    xmin: u64,
    xmax: u64,
    /// Sorted.
    xip: Vec<u64>,
}

impl Snapshot {
    pub fn new(xmin: u64, xmax: u64, mut xip: Vec<u64>) -> Snapshot {
        xip.sort_unstable();
        Snapshot { xmin, xmax, xip }
    }

    /// Whether the effects of (committed) transaction `txid` are visible in this snapshot.
    pub fn visible(&self, txid: u64) -> bool {
        if txid < self.xmin {
            true
        } else if txid >= self.xmax {
            false
        } else {
            self.xip.binary_search(&txid).is_err()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_rules() {
        let s = Snapshot::new(100, 110, vec![105, 101]);
        assert!(s.visible(99));
        assert!(s.visible(100));
        assert!(!s.visible(101));
        assert!(s.visible(102));
        assert!(!s.visible(105));
        assert!(s.visible(109));
        assert!(!s.visible(110));
        assert!(!s.visible(u64::MAX));
    }
}
