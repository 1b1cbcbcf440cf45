//! The sentences the Piper examples speak: telephone prompts of typical length.

pub const TEXTS: &[&str] = &[
    "Thank you for calling, how can I help you today?",
    "Your appointment is confirmed for Tuesday at three thirty in the afternoon.",
    "I can help you with that, please hold on for a moment.",
    "The total comes to forty two dollars and fifteen cents.",
    "Could you please spell your last name for me?",
    "Please say or enter your account number, followed by the pound key.",
];
