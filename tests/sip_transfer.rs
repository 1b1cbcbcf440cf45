//! Blind transfer and DTMF over SIP INFO, end to end: the real binary, an agent on the control
//! socket, and a hand-written SIP peer on a UDP socket as the caller and transferee. The peer
//! checks the REFER's headers, answers it, and sends the NOTIFYs a transferee sends
//! (RFC 3515: `message/sipfrag` status lines).

mod common;

use std::time::Duration;

use common::agent::*;
use common::calls::*;
use common::sip::*;
use serde_json::json;

const TARGET: &str = "sip:bob@127.0.0.1:5999";

/// A server without greeting, one call placed by hand, and an agent attached to it.
struct Live {
    server: Server,
    sip: SipSocket,
    _media: Media,
    dialog: Dialog,
    agent: Agent,
}

impl Live {
    fn start() -> Live {
        let server = Server::start(&["--greeting", ""]);
        let sip = SipSocket::bind(server.sip);
        let media = Media::bind();
        let dialog = call(&server, &sip, media.addr);
        let agent = Agent::attach(&server, &dialog.id);
        Live { server, sip, _media: media, dialog, agent }
    }

    /// The next request with `method` from the server.
    fn expect(&self, method: &str) -> SipMessage {
        let r = self.sip.recv_until(WAIT, |m| m.method() == Some(method));
        r.unwrap_or_else(|| panic!("no {method} from the server\n{}", self.sip.transcript())).msg
    }

    fn answer(&self, request: &SipMessage, status: u16, reason: &str) {
        self.sip.send_raw(response_to(request, status, reason, None).as_bytes());
    }

    /// The agent asks for the transfer; returns the server's REFER.
    fn transfer(&mut self) -> SipMessage {
        self.agent.send(json!({"type": "transfer", "to": TARGET}));
        self.expect("REFER")
    }

    /// Sends a NOTIFY of the refer subscription; expects its 200.
    fn notify(&mut self, state: &str, frag: &str) {
        self.dialog.cseq += 1;
        let mut notify = self.dialog.invite.in_dialog("NOTIFY", self.dialog.cseq, &self.dialog.to_tag, self.dialog.contact.as_deref());
        notify = notify.header("Event: refer").header(&format!("Subscription-State: {state}"));
        notify.body = Some(("message/sipfrag".into(), frag.into()));
        self.sip.send(&notify);
        let ok = self.sip.final_response(&notify, WAIT).unwrap_or_else(|| panic!("no answer to NOTIFY\n{}", self.sip.transcript()));
        assert_eq!(ok.msg.status(), Some(200), "{}", self.sip.transcript());
    }

    fn call_is_live(&self) -> bool {
        self.server.calls().iter().any(|c| c.id == self.dialog.id && c.state == "active")
    }
}

#[test]
fn notify_trying_then_ok_reports_progress_and_done_and_the_call_ends_with_bye() {
    let _slot = shared_slot();
    let mut live = Live::start();
    let refer = live.transfer();
    assert_eq!(refer.call_id(), Some(live.dialog.invite.call_id.as_str()));
    assert_eq!(refer.request_uri(), Some(format!("sip:tester@{}", live.sip.local).as_str()), "to our Contact");
    assert_eq!(refer.header("Refer-To"), Some(format!("<{TARGET}>").as_str()));
    let referred_by = refer.header("Referred-By").expect("Referred-By");
    assert!(referred_by.starts_with("<sip:agent@") && !referred_by.contains("tag="), "{referred_by}");
    assert!(refer.header("Contact").is_some());
    assert_eq!(refer.to_tag().as_deref(), Some(live.dialog.invite.from_tag.as_str()));
    assert_eq!(refer.from_tag().as_deref(), Some(live.dialog.to_tag.as_str()));
    assert_eq!(refer.cseq_method().as_deref(), Some("REFER"));
    live.answer(&refer, 202, "Accepted");
    live.notify("active;expires=60", "SIP/2.0 100 Trying\r\n");
    live.agent.wait_for("transfer.progress", WAIT);
    live.notify("terminated;reason=noresource", "SIP/2.0 200 OK\r\n");
    let bye = live.expect("BYE");
    live.answer(&bye, 200, "OK");
    let (_, done) = live.agent.wait_for("transfer.done", WAIT);
    assert_eq!((done["status"].as_u64(), done["reason"].as_str()), (Some(200), Some("OK")));
    let progress: Vec<u64> = live.agent.all("transfer.progress").iter().filter_map(|e| e["status"].as_u64()).collect();
    assert_eq!(progress, vec![202, 100], "the REFER's 202, then the NOTIFY's 100");
    let (_, ended) = live.agent.wait_for("call.ended", WAIT);
    assert_eq!(ended["reason"], "transferred");
    live.server.wait_call_gone(&live.dialog.invite.call_id, WAIT);
}

#[test]
fn a_failing_notify_reports_transfer_failed_and_the_call_goes_on() {
    let _slot = shared_slot();
    let mut live = Live::start();
    let refer = live.transfer();
    live.answer(&refer, 202, "Accepted");
    live.notify("terminated;reason=noresource", "SIP/2.0 503 Service Unavailable\r\n");
    let (_, failed) = live.agent.wait_for("transfer.failed", WAIT);
    assert_eq!(failed["status"].as_u64(), Some(503));
    assert!(live.sip.recv_until(Duration::from_millis(500), |m| m.method() == Some("BYE")).is_none(), "no BYE");
    assert!(live.call_is_live());
    live.dialog.bye(&live.sip);
}

#[test]
fn a_refused_refer_reports_transfer_failed_and_a_refer_to_voxline_gets_403() {
    let _slot = shared_slot();
    let mut live = Live::start();
    let refer = live.transfer();
    live.answer(&refer, 403, "Forbidden");
    let (_, failed) = live.agent.wait_for("transfer.failed", WAIT);
    assert_eq!((failed["status"].as_u64(), failed["reason"].as_str()), (Some(403), Some("Forbidden")));
    assert!(live.call_is_live());
    // The caller may not transfer voxline.
    live.dialog.cseq += 1;
    let theirs = live.dialog.invite.in_dialog("REFER", live.dialog.cseq, &live.dialog.to_tag, live.dialog.contact.as_deref());
    live.sip.send(&theirs.header("Refer-To: <sip:mallory@127.0.0.1:5998>"));
    let refused = live.sip.recv_until(WAIT, |m| m.cseq_method().as_deref() == Some("REFER") && m.status().is_some());
    assert_eq!(refused.map(|r| r.msg.status()), Some(Some(403)), "{}", live.sip.transcript());
    assert!(live.call_is_live());
    live.dialog.bye(&live.sip);
}

#[test]
fn send_dtmf_with_method_info_sends_one_info_per_digit_in_turn() {
    let _slot = shared_slot();
    let mut live = Live::start();
    live.agent.send(json!({"type": "send_dtmf", "digits": "1#", "method": "info"}));
    let first = live.expect("INFO");
    assert_eq!(first.header("Content-Type"), Some("application/dtmf-relay"));
    assert_eq!(first.body, "Signal=1\r\nDuration=160\r\n");
    assert!(live.sip.recv_until(Duration::from_millis(300), |m| m.method() == Some("INFO")).is_none(), "one INFO at a time");
    live.answer(&first, 200, "OK");
    let second = live.expect("INFO");
    assert_eq!(second.body, "Signal=#\r\nDuration=160\r\n");
    live.answer(&second, 200, "OK");
    live.agent.pump(Duration::from_millis(200));
    assert!(live.agent.find("error").is_none(), "{:?}", live.agent.events);
    live.dialog.bye(&live.sip);
}

#[test]
fn a_digit_the_caller_sends_as_info_reaches_the_agent() {
    let _slot = shared_slot();
    let mut live = Live::start();
    live.dialog.cseq += 1;
    let mut info = live.dialog.invite.in_dialog("INFO", live.dialog.cseq, &live.dialog.to_tag, live.dialog.contact.as_deref());
    info.body = Some(("application/dtmf-relay".into(), "Signal=5\r\nDuration=160\r\n".into()));
    live.sip.send(&info);
    let ok = live.sip.final_response(&info, WAIT).expect("an answer to INFO");
    assert_eq!(ok.msg.status(), Some(200));
    let (_, dtmf) = live.agent.wait_for("dtmf", WAIT);
    assert_eq!(dtmf["digit"], "5");
    live.dialog.bye(&live.sip);
}
