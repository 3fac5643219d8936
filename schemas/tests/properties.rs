//! Property tests for the codec and the partitioner.

use moss_schemas::{
    AccountName, DisplayName, EmailAddress, Envelope, EventData, GroupAdded, GroupMembersChanged,
    GroupName, MailAlias, OnlineAccount, PersonName, Reason, Sequence, SkuPartNumber, Source,
    Subject, Upn, UsageLocation, UserAdded, UserAliasAdded, UserDeactivated, UserRemoved,
};
use proptest::prelude::*;

fn subject() -> impl Strategy<Value = Subject> {
    any::<u128>()
        .prop_filter("not nil", |bits| *bits != 0)
        .prop_map(|bits| Subject::try_from(uuid::Uuid::from_u128(bits)).unwrap())
}

fn upn() -> impl Strategy<Value = Upn> {
    "[A-Za-z0-9_'-]{1,20}(\\.[A-Za-z0-9!#^~-]{1,10})?@[a-z0-9]{1,10}\\.(com|nl|onmicrosoft\\.com)"
        .prop_map(|text| Upn::parse(&text).unwrap())
}

fn online_account() -> impl Strategy<Value = OnlineAccount> {
    (
        upn(),
        "[A-Z]{2}",
        proptest::collection::btree_set("[A-Z][A-Z0-9_]{0,15}", 0..4),
    )
        .prop_map(|(upn, location, skus)| OnlineAccount {
            upn,
            usage_location: UsageLocation::parse(&location).unwrap(),
            licenses: skus
                .iter()
                .map(|sku| SkuPartNumber::parse(sku).unwrap())
                .collect(),
        })
}

fn data() -> impl Strategy<Value = EventData> {
    prop_oneof![
        (
            "[a-z][a-z0-9._-]{0,18}[a-z0-9]",
            "\\PC{0,40}[a-zA-Z]",
            proptest::option::of("[A-Z][a-zé]{0,20}"),
            proptest::option::of(online_account())
        )
            .prop_map(|(account, display, given, online)| EventData::UserAdded(
                UserAdded {
                    account_name: AccountName::parse(&account).unwrap(),
                    display_name: DisplayName::parse(&display).unwrap(),
                    given_name: given.map(|name| PersonName::parse(&name).unwrap()),
                    surname: None,
                    online_account: online,
                    initial_password: None,
                }
            )),
        online_account().prop_map(EventData::OnlineAccountAssigned),
        "[^\\x00-\\x1f\\x7f]{1,100}".prop_map(|reason| EventData::UserDeactivated(
            UserDeactivated {
                reason: Reason::parse(&reason).unwrap()
            }
        )),
        Just(EventData::UserRemoved(UserRemoved {})),
        "[a-z0-9]{1,20}(\\.[a-z0-9+]{1,5})?@contoso\\.com".prop_map(|address| {
            EventData::UserAliasAdded(UserAliasAdded {
                address: EmailAddress::parse(&address).unwrap(),
            })
        }),
        (
            "[A-Za-z0-9][A-Za-z0-9 ]{0,30}[A-Za-z0-9]",
            "[a-z0-9!#$%&'*+/=?^_`{|}~-]{1,30}",
            any::<bool>(),
            proptest::collection::btree_set(subject(), 0..5)
        )
            .prop_map(|(name, alias, external, members)| EventData::GroupAdded(
                GroupAdded {
                    name: GroupName::parse(&name).unwrap(),
                    alias: MailAlias::parse(&alias).unwrap(),
                    primary_smtp_address: None,
                    description: None,
                    allow_external_senders: external,
                    members: members.into_iter().collect(),
                }
            )),
        (
            proptest::collection::btree_set(subject(), 0..4),
            proptest::collection::btree_set(subject(), 0..4)
        )
            .prop_map(|(add, remove)| EventData::GroupMembersChanged(
                GroupMembersChanged {
                    remove: remove.difference(&add).copied().collect(),
                    add: add.into_iter().collect(),
                }
            )),
    ]
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (subject(), any::<u64>(), 0_i64..4_102_444_800_000, data()).prop_map(
        |(subject, sequence, millis, data)| {
            let mut envelope = Envelope::new(
                Source::parse("moss-producer/ldap://dc1").unwrap(),
                subject,
                Sequence(sequence),
                data,
            );
            envelope.time = chrono::DateTime::from_timestamp_millis(millis).unwrap();
            envelope
        },
    )
}

proptest! {
    #[test]
    fn every_envelope_decodes_from_its_own_encoding(envelope in envelope()) {
        let decoded = Envelope::from_json_slice(&envelope.to_json_vec()).unwrap();
        prop_assert_eq!(decoded, envelope);
    }

    #[test]
    fn the_partition_is_below_n_and_ignores_the_case_of_the_subject(bits in 1_u128.., partitions in 1_u16..) {
        let uuid = uuid::Uuid::from_u128(bits);
        let lower = Subject::parse(&uuid.hyphenated().to_string()).unwrap();
        let upper = Subject::parse(&uuid.hyphenated().to_string().to_uppercase()).unwrap();
        prop_assert!(lower.partition(partitions) < partitions);
        prop_assert_eq!(lower.partition(partitions), upper.partition(partitions));
    }

    #[test]
    fn a_sequence_survives_its_string_form(value in any::<u64>()) {
        prop_assert_eq!(Sequence::parse(&Sequence(value).to_string()).unwrap(), Sequence(value));
    }

    #[test]
    fn arbitrary_json_never_panics_the_decoder(text in "\\PC{0,200}") {
        let _ = Envelope::from_json_slice(text.as_bytes());
    }
}
