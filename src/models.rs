//! Where voices live on disk, and fetching the embedded default voice.
