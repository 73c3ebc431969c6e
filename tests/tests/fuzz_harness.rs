//! The fuzz harnesses, run over pseudo-random inputs so CI exercises them
//! even without a nightly toolchain.

use astral_sim::fuzzing::run_ordering;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn ordering_two_streams(data in prop::collection::vec(any::<u8>(), 0..400)) {
        prop_assert_eq!(run_ordering(&data, 2, false), Ok(()));
    }

    #[test]
    fn ordering_three_streams_with_kills(data in prop::collection::vec(any::<u8>(), 0..400)) {
        prop_assert_eq!(run_ordering(&data, 3, true), Ok(()));
    }
}
