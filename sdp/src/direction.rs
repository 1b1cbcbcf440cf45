//! The media direction attributes `a=sendrecv|sendonly|recvonly|inactive` (RFC 8866 §6.7).

use std::fmt;

/// Which way media flows, from the point of view of the side that wrote the description.
///
/// When neither the media section nor the session carries a direction attribute the stream is
/// `sendrecv` (RFC 8866 §6.7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `a=sendrecv`: send and receive.
    #[default]
    SendRecv,
    /// `a=sendonly`: send only; an offer with it puts the call on hold (RFC 3264 §8.4).
    SendOnly,
    /// `a=recvonly`: receive only.
    RecvOnly,
    /// `a=inactive`: neither send nor receive.
    Inactive,
}

impl Direction {
    /// The attribute name, e.g. `"sendrecv"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Parses an attribute name (case-insensitive); `None` when it is not a direction.
    pub fn from_attribute(name: &str) -> Option<Direction> {
        [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ]
        .into_iter()
        .find(|d| d.as_str().eq_ignore_ascii_case(name))
    }

    /// The direction an answer takes for an offer with this one (RFC 3264 §6.1):
    /// sendonly ↔ recvonly, sendrecv and inactive unchanged.
    pub const fn reversed(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            other => other,
        }
    }

    /// Whether the side that wrote it sends media.
    pub const fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the side that wrote it receives media.
    pub const fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// This direction with sending removed (sendrecv → recvonly, sendonly → inactive).
    pub const fn without_send(self) -> Direction {
        match self {
            Direction::SendRecv | Direction::RecvOnly => Direction::RecvOnly,
            Direction::SendOnly | Direction::Inactive => Direction::Inactive,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_names_round_trip_case_insensitively() {
        for d in [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ] {
            assert_eq!(Direction::from_attribute(d.as_str()), Some(d));
            assert_eq!(
                Direction::from_attribute(&d.as_str().to_ascii_uppercase()),
                Some(d)
            );
        }
        assert_eq!(Direction::from_attribute("rtcp-mux"), None);
    }

    #[test]
    fn answer_reverses_one_way_directions() {
        assert_eq!(Direction::SendOnly.reversed(), Direction::RecvOnly);
        assert_eq!(Direction::RecvOnly.reversed(), Direction::SendOnly);
        assert_eq!(Direction::SendRecv.reversed(), Direction::SendRecv);
        assert_eq!(Direction::Inactive.reversed(), Direction::Inactive);
    }

    #[test]
    fn without_send_keeps_only_receiving() {
        assert_eq!(Direction::SendRecv.without_send(), Direction::RecvOnly);
        assert_eq!(Direction::SendOnly.without_send(), Direction::Inactive);
        assert!(!Direction::SendRecv.without_send().sends());
    }
}
