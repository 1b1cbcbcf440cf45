//! SIP messages and SDP, parsed just enough for the tests, and the SDP offers
//! the tests send.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use super::harness::unique;

/// A parsed SIP message (request or response).
#[derive(Clone, Debug)]
pub struct SipMessage {
    pub start_line: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub raw: String,
}

/// Long form of a compact header name (RFC 3261 7.3.3).
fn long_header_name(name: &str) -> &str {
    match name.to_ascii_lowercase().as_str() {
        "i" => "Call-ID",
        "m" => "Contact",
        "e" => "Content-Encoding",
        "l" => "Content-Length",
        "c" => "Content-Type",
        "f" => "From",
        "s" => "Subject",
        "k" => "Supported",
        "t" => "To",
        "v" => "Via",
        _ => name,
    }
}

impl SipMessage {
    pub fn parse(text: &str) -> Option<SipMessage> {
        let text_trim = text.trim_start_matches(['\r', '\n']);
        let (head, body) = match text_trim.find("\r\n\r\n") {
            Some(i) => (&text_trim[..i], &text_trim[i + 4..]),
            None => match text_trim.find("\n\n") {
                Some(i) => (&text_trim[..i], &text_trim[i + 2..]),
                None => (text_trim, ""),
            },
        };
        let mut lines = head.lines();
        let start_line = lines.next()?.trim_end().to_string();
        if start_line.is_empty() {
            return None;
        }
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in lines {
            let line = line.trim_end_matches('\r');
            if line.starts_with(' ') || line.starts_with('\t') {
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.push((long_header_name(k.trim()).to_string(), v.trim().to_string()));
            }
        }
        Some(SipMessage { start_line, headers, body: body.to_string(), raw: text.to_string() })
    }

    pub fn is_response(&self) -> bool {
        self.start_line.starts_with("SIP/2.0 ")
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        if !self.is_response() {
            return None;
        }
        self.start_line.split_whitespace().nth(1)?.parse().ok()
    }

    /// The method of a request.
    pub fn method(&self) -> Option<&str> {
        if self.is_response() {
            None
        } else {
            self.start_line.split_whitespace().next()
        }
    }

    /// The Request-URI of a request.
    pub fn request_uri(&self) -> Option<&str> {
        if self.is_response() {
            None
        } else {
            self.start_line.split_whitespace().nth(1)
        }
    }

    /// First header of this name (case-insensitive; compact forms understood).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = long_header_name(name);
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// All values of this header, comma lists split.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        let name = long_header_name(name);
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_string()).collect::<Vec<_>>())
            .filter(|s| !s.is_empty())
            .collect()
    }

    pub fn call_id(&self) -> Option<&str> {
        self.header("Call-ID")
    }

    /// (number, method) of CSeq.
    pub fn cseq(&self) -> Option<(u32, String)> {
        let v = self.header("CSeq")?;
        let mut it = v.split_whitespace();
        Some((it.next()?.parse().ok()?, it.next()?.to_string()))
    }

    pub fn cseq_method(&self) -> Option<String> {
        self.cseq().map(|(_, m)| m)
    }

    pub fn to_tag(&self) -> Option<String> {
        header_param(self.header("To")?, "tag")
    }

    #[allow(clippy::wrong_self_convention)] // the From header's tag, not a conversion
    pub fn from_tag(&self) -> Option<String> {
        header_param(self.header("From")?, "tag")
    }

    /// The branch of the top Via.
    pub fn via_branch(&self) -> Option<String> {
        header_param(self.header("Via")?, "branch")
    }

    /// Methods in Allow (upper-cased).
    pub fn allow(&self) -> BTreeSet<String> {
        self.header_values("Allow").into_iter().map(|m| m.to_ascii_uppercase()).collect()
    }

    /// The URI inside Contact (`<sip:...>` or bare).
    pub fn contact_uri(&self) -> Option<String> {
        let v = self.header("Contact")?;
        Some(match (v.find('<'), v.find('>')) {
            (Some(a), Some(b)) if b > a => v[a + 1..b].to_string(),
            _ => v.split(';').next().unwrap_or(v).trim().to_string(),
        })
    }

    /// The SDP body, if Content-Type says so.
    pub fn sdp(&self) -> Option<Result<Sdp, String>> {
        let ct = self.header("Content-Type")?;
        if !ct.to_ascii_lowercase().starts_with("application/sdp") {
            return None;
        }
        Some(Sdp::parse(&self.body))
    }

    /// Content-Length as declared.
    pub fn content_length(&self) -> Option<usize> {
        self.header("Content-Length")?.trim().parse().ok()
    }
}

/// `;name=value` from a header value (after the URI's closing `>` if any).
pub fn header_param(value: &str, name: &str) -> Option<String> {
    let params = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value,
    };
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// A session description, parsed just enough for the tests.
#[derive(Clone, Debug, Default)]
pub struct Sdp {
    pub lines: Vec<String>,
    pub origin: Option<String>,
    pub connection: Option<IpAddr>,
    pub media: Vec<SdpMedia>,
}

#[derive(Clone, Debug, Default)]
pub struct SdpMedia {
    pub kind: String,
    pub port: u16,
    pub proto: String,
    pub formats: Vec<u8>,
    /// payload type -> "PCMU/8000"
    pub rtpmap: BTreeMap<u8, String>,
    pub fmtp: BTreeMap<u8, String>,
    pub connection: Option<IpAddr>,
    /// Other `a=` lines, without `a=`.
    pub attributes: Vec<String>,
}

impl Sdp {
    pub fn parse(body: &str) -> Result<Sdp, String> {
        let mut sdp = Sdp::default();
        let mut saw_v = false;
        for line in body.lines().map(|l| l.trim_end_matches('\r')).filter(|l| !l.is_empty()) {
            sdp.lines.push(line.to_string());
            let (k, v) = line.split_once('=').ok_or_else(|| format!("SDP line without '=': {line:?}"))?;
            match k {
                "v" => {
                    if v != "0" {
                        return Err(format!("v={v}, expected 0"));
                    }
                    saw_v = true;
                }
                "o" => sdp.origin = Some(v.to_string()),
                "c" => {
                    let parts: Vec<&str> = v.split_whitespace().collect();
                    if parts.len() != 3 || parts[0] != "IN" || !(parts[1] == "IP4" || parts[1] == "IP6") {
                        return Err(format!("bad c= line {line:?}"));
                    }
                    let addr: IpAddr = parts[2]
                        .split('/')
                        .next()
                        .unwrap()
                        .parse()
                        .map_err(|_| format!("bad c= address in {line:?}"))?;
                    match sdp.media.last_mut() {
                        Some(m) => m.connection = Some(addr),
                        None => sdp.connection = Some(addr),
                    }
                }
                "m" => {
                    let parts: Vec<&str> = v.split_whitespace().collect();
                    if parts.len() < 4 {
                        return Err(format!("bad m= line {line:?}"));
                    }
                    let port: u16 =
                        parts[1].split('/').next().unwrap().parse().map_err(|_| format!("bad m= port in {line:?}"))?;
                    let formats = parts[3..]
                        .iter()
                        .map(|f| f.parse::<u8>().map_err(|_| format!("bad payload type {f:?} in {line:?}")))
                        .collect::<Result<Vec<_>, _>>()?;
                    sdp.media.push(SdpMedia {
                        kind: parts[0].to_string(),
                        port,
                        proto: parts[2].to_string(),
                        formats,
                        ..Default::default()
                    });
                }
                "a" => {
                    let Some(m) = sdp.media.last_mut() else { continue };
                    if let Some(rest) = v.strip_prefix("rtpmap:") {
                        let (pt, enc) = rest.split_once(' ').ok_or_else(|| format!("bad rtpmap {line:?}"))?;
                        let pt: u8 = pt.parse().map_err(|_| format!("bad rtpmap payload type {line:?}"))?;
                        m.rtpmap.insert(pt, enc.trim().to_string());
                    } else if let Some(rest) = v.strip_prefix("fmtp:") {
                        if let Some((pt, params)) = rest.split_once(' ') {
                            if let Ok(pt) = pt.parse::<u8>() {
                                m.fmtp.insert(pt, params.trim().to_string());
                            }
                        }
                    } else {
                        m.attributes.push(v.to_string());
                    }
                }
                _ => {}
            }
        }
        if !saw_v {
            return Err("no v= line".into());
        }
        Ok(sdp)
    }

    pub fn audio(&self) -> Option<&SdpMedia> {
        self.media.iter().find(|m| m.kind == "audio")
    }

    /// Where the audio stream goes: the media-level c= or else the session's.
    pub fn audio_addr(&self) -> Option<SocketAddr> {
        let m = self.audio()?;
        Some(SocketAddr::new(m.connection.or(self.connection)?, m.port))
    }
}

impl SdpMedia {
    /// The payload type whose rtpmap encoding name is `name` (case-insensitive).
    pub fn payload_type_of(&self, name: &str) -> Option<u8> {
        self.rtpmap
            .iter()
            .find(|(_, enc)| enc.split('/').next().is_some_and(|n| n.eq_ignore_ascii_case(name)))
            .map(|(pt, _)| *pt)
    }

    pub fn has_attribute(&self, name: &str) -> bool {
        self.attributes.iter().any(|a| a == name || a.starts_with(&format!("{name}:")))
    }
}

/// An SDP offer for PCMU (0) + telephone-event (101) at `addr`.
pub fn pcmu_offer(addr: SocketAddr) -> String {
    let ip = addr.ip();
    let fam = if ip.is_ipv4() { "IP4" } else { "IP6" };
    format!(
        "v=0\r\no=tester {n} {n} IN {fam} {ip}\r\ns=-\r\nc=IN {fam} {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
        n = 1000 + unique(),
        port = addr.port()
    )
}

/// An SDP offer for G.729 only (18) at `addr`.
pub fn g729_offer(addr: SocketAddr) -> String {
    format!(
        "v=0\r\no=tester 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\na=fmtp:18 annexb=no\r\na=ptime:20\r\n",
        ip = addr.ip(),
        port = addr.port()
    )
}
