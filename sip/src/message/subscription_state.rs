//! The `Subscription-State` header of a NOTIFY (RFC 6665 8.2.3): `active;expires=60`,
//! `terminated;reason=noresource`. Together with `Event`, which names the package (`refer`,
//! RFC 3515 2.4.4, possibly with `;id=<CSeq of the REFER>`).

use super::grammar;

/// Where the subscription stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubState {
    Active,
    Pending,
    Terminated,
    /// An extension value; RFC 6665 says to treat it as `active` until told otherwise.
    Other,
}

/// A parsed `Subscription-State` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubscriptionState {
    pub state: SubState,
    /// Seconds the subscription has left (`expires`), when given.
    pub expires: Option<u32>,
    /// Why it ended (`reason`), when given.
    pub reason: Option<String>,
}

impl SubscriptionState {
    pub(crate) fn parse(value: &str) -> Result<SubscriptionState, &'static str> {
        let value = value.trim_matches(grammar::is_wsp);
        let end = value.find(';').unwrap_or(value.len());
        let name = value[..end].trim_matches(grammar::is_wsp);
        if !grammar::is_token(name) {
            return Err("Subscription-State is not a token");
        }
        let state = match name.to_ascii_lowercase().as_str() {
            "active" => SubState::Active,
            "pending" => SubState::Pending,
            "terminated" => SubState::Terminated,
            _ => SubState::Other,
        };
        let params = grammar::params(&value[end..])?;
        let expires = grammar::find_param(&params, "expires")
            .flatten()
            .and_then(super::fields::parse_digits);
        let reason = grammar::find_param(&params, "reason")
            .flatten()
            .map(str::to_string);
        Ok(SubscriptionState {
            state,
            expires,
            reason,
        })
    }
}

/// True when an `Event` header value names the `refer` package (RFC 3515 2.4.4).
pub(crate) fn is_refer_event(value: &str) -> bool {
    let package = value.split(';').next().unwrap_or_default();
    package
        .trim_matches(grammar::is_wsp)
        .eq_ignore_ascii_case("refer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_with_their_parameters() {
        let s = SubscriptionState::parse("active;expires=60").unwrap();
        assert_eq!(
            (s.state, s.expires, s.reason),
            (SubState::Active, Some(60), None)
        );
        let s = SubscriptionState::parse("terminated ; reason=noresource").unwrap();
        assert_eq!(s.state, SubState::Terminated);
        assert_eq!(s.reason.as_deref(), Some("noresource"));
        assert_eq!(
            SubscriptionState::parse("Pending").unwrap().state,
            SubState::Pending
        );
        assert_eq!(
            SubscriptionState::parse("waiting").unwrap().state,
            SubState::Other
        );
        assert!(SubscriptionState::parse("").is_err());
        assert!(SubscriptionState::parse("active;").is_err());
    }

    #[test]
    fn the_refer_package_with_or_without_an_id() {
        assert!(is_refer_event("refer"));
        assert!(is_refer_event("refer;id=93809824"));
        assert!(is_refer_event(" Refer "));
        assert!(!is_refer_event("presence"));
        assert!(!is_refer_event("refer-x"));
    }
}
