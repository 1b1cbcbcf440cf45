//! SIP user agent core (being written).
