//! Per-subject lanes inside one partition: a subject's deliveries run one at a time, in the
//! order they arrived, while other subjects' deliveries run beside them. One subject's slow or
//! failing event therefore never holds up another subject of the same partition.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Which lane a delivery belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum LaneKey {
    /// The event's subject.
    Subject(moss_schemas::Subject),
    /// A message that did not decode: a lane of its own (its subject cannot be trusted).
    Undecodable(u64),
}

/// The queues of busy lanes. A lane exists while one of its items runs; items that arrive
/// meanwhile wait in it.
#[derive(Debug)]
pub(crate) struct Lanes<K, T> {
    waiting: HashMap<K, VecDeque<T>>,
}

impl<K: Eq + Hash + Clone, T> Lanes<K, T> {
    pub(crate) fn new() -> Lanes<K, T> {
        Lanes {
            waiting: HashMap::new(),
        }
    }

    /// Offers `item` to lane `key`: it comes back to be started now when the lane was idle,
    /// or waits behind the lane's running item.
    pub(crate) fn offer(&mut self, key: K, item: T) -> Option<T> {
        match self.waiting.get_mut(&key) {
            Some(queue) => {
                queue.push_back(item);
                None
            }
            None => {
                self.waiting.insert(key, VecDeque::new());
                Some(item)
            }
        }
    }

    /// The running item of lane `key` finished: the next one to start, if any; the lane
    /// closes when none waits.
    pub(crate) fn finished(&mut self, key: &K) -> Option<T> {
        let queue = self.waiting.get_mut(key)?;
        let next = queue.pop_front();
        if next.is_none() {
            self.waiting.remove(key);
        }
        next
    }

    /// Every waiting (not running) item, lane by lane in arrival order, closing the lanes.
    pub(crate) fn drain_waiting(&mut self) -> Vec<T> {
        self.waiting
            .drain()
            .flat_map(|(_, queue)| queue.into_iter())
            .collect()
    }

    /// The number of busy lanes.
    #[cfg(test)]
    pub(crate) fn busy(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_runs_one_item_at_a_time_in_arrival_order() {
        let mut lanes = Lanes::new();
        assert_eq!(lanes.offer("a", 1), Some(1));
        assert_eq!(lanes.offer("a", 2), None);
        assert_eq!(lanes.offer("a", 3), None);
        assert_eq!(lanes.finished(&"a"), Some(2));
        assert_eq!(lanes.finished(&"a"), Some(3));
        assert_eq!(lanes.finished(&"a"), None);
        assert_eq!(lanes.busy(), 0);
        assert_eq!(lanes.offer("a", 4), Some(4));
    }

    #[test]
    fn a_busy_subject_does_not_hold_up_another() {
        let mut lanes = Lanes::new();
        assert_eq!(lanes.offer("stuck", 1), Some(1));
        assert_eq!(lanes.offer("stuck", 2), None);
        assert_eq!(lanes.offer("other", 3), Some(3));
        assert_eq!(lanes.finished(&"other"), None);
        assert_eq!(lanes.offer("other", 4), Some(4));
        assert_eq!(lanes.busy(), 2);
    }

    #[test]
    fn draining_returns_only_waiting_items_and_closes_the_lanes() {
        let mut lanes = Lanes::new();
        lanes.offer("a", 1);
        lanes.offer("a", 2);
        lanes.offer("a", 3);
        lanes.offer("b", 4);
        let mut drained = lanes.drain_waiting();
        drained.sort_unstable();
        assert_eq!(drained, vec![2, 3]);
        assert_eq!(lanes.busy(), 0);
    }
}
