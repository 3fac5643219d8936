//! More properties of the partitioner (`Subject::partition`), besides the range and case
//! checks in properties.rs: it is one fixed hash taken modulo the partition count, it spreads
//! subjects evenly, and it reaches every partition.

use moss_schemas::Subject;
use proptest::prelude::*;

fn subject() -> impl Strategy<Value = Subject> {
    any::<u128>()
        .prop_filter("not nil", |bits| *bits != 0)
        .prop_map(|bits| Subject::try_from(uuid::Uuid::from_u128(bits)).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// One hash modulo n: with k·n partitions a subject lands in a partition congruent to its
    /// partition among n (so every producer and worker that agrees on n agrees on the queue,
    /// and multiplying the partitions keeps each subject in its residue class).
    #[test]
    fn the_partition_is_one_hash_modulo_the_count(
        subject in subject(),
        partitions in 1_u16..=255,
        factor in 1_u16..=255,
    ) {
        let wider = partitions * factor;
        prop_assert_eq!(subject.partition(wider) % partitions, subject.partition(partitions));
        prop_assert_eq!(subject.partition(1), 0);
    }

    /// The same subject written in upper case or parsed again is the same partition.
    #[test]
    fn a_subject_keeps_its_partition_however_it_is_written(subject in subject(), partitions in 1_u16..) {
        let upper = Subject::parse(&subject.to_string().to_uppercase()).unwrap();
        let again = Subject::parse(&subject.to_string()).unwrap();
        prop_assert_eq!(upper.partition(partitions), subject.partition(partitions));
        prop_assert_eq!(again.partition(partitions), subject.partition(partitions));
    }
}

/// 16,000 random subjects over 8 and over 13 partitions: every partition gets within 15 % of
/// its fair share (the standard deviation is about 2.5 % and 3.3 %, so this cannot fail by
/// chance in practice, and a biased hash would).
#[test]
fn subjects_spread_evenly_over_the_partitions() {
    let subjects: Vec<Subject> = (0..16_000)
        .map(|_| Subject::try_from(uuid::Uuid::new_v4()).unwrap())
        .collect();
    for partitions in [8_u16, 13] {
        let mut counts = vec![0_u32; usize::from(partitions)];
        for subject in &subjects {
            counts[usize::from(subject.partition(partitions))] += 1;
        }
        let fair = 16_000.0 / f64::from(partitions);
        for (partition, count) in counts.iter().enumerate() {
            let ratio = f64::from(*count) / fair;
            assert!(
                (0.85..=1.15).contains(&ratio),
                "partition {partition} of {partitions} got {count} subjects, {ratio:.2} of its share"
            );
        }
    }
}
