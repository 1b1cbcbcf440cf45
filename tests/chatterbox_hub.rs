//! Chatterbox models from the Hugging Face hub: `voxline fetch-model` and
//! `voxline say --engine chatterbox-nano` without --model-dir, against a hub
//! on loopback (`common::hub::FakeHub`, the hub's resolve/redirect/Range
//! protocol) publishing the reduced fixture model (`common::chatterbox`).
//! The real binary, real HTTP, the real cache layout.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::harness::OutputWithin;
use common::hub::FakeHub;
use common::sip::scratch_dir;

const REPO: &str = "voxline-test/tiny-nano";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

struct Env {
    hub: FakeHub,
    home: PathBuf,
    model: PathBuf,
    work: PathBuf,
}

fn setup(tag: &str) -> Env {
    let work = scratch_dir(tag);
    let model = common::chatterbox::tiny_model(&work.join("published"));
    let hub = FakeHub::start();
    hub.publish(REPO, COMMIT, &model);
    Env { hub, home: work.join("hf-home"), model, work }
}

impl Env {
    fn voxline(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_voxline"));
        cmd.args(args)
            .current_dir(&self.work)
            .env("HF_ENDPOINT", &self.hub.endpoint)
            .env("HF_HOME", &self.home)
            .env_remove("HF_HUB_CACHE")
            .env_remove("HF_TOKEN")
            .env_remove("HF_HUB_OFFLINE")
            .env_remove("VOXLINE_MODEL_DIR")
            .env_remove("VOXLINE_MODEL_REPO");
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.output_within(Duration::from_secs(300), "voxline").expect("run voxline")
    }

    fn repo_cache(&self) -> PathBuf {
        self.home.join("hub").join("models--voxline-test--tiny-nano")
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn fetch(env: &Env, extra_env: &[(&str, &str)]) -> Output {
    env.voxline(&["fetch-model", "chatterbox-nano", "--model-repo", REPO], extra_env)
}

/// Every required file of the snapshot is a link into blobs/ with the published bytes.
fn assert_snapshot_matches(env: &Env, snapshot: &Path) {
    for f in ["t3_nano_v1.safetensors", "s3gen_meanflow.safetensors", "conds.pt", "vocab.json", "merges.txt", "voxline-chatterbox.json"] {
        let at = snapshot.join(f);
        let link = std::fs::read_link(&at).unwrap_or_else(|e| panic!("{} is not a link: {e}", at.display()));
        assert!(link.starts_with("../../blobs"), "{f} -> {}", link.display());
        assert_eq!(std::fs::read(&at).unwrap(), std::fs::read(env.model.join(f)).unwrap(), "{f} differs from the published file");
    }
}

#[test]
fn fetch_model_downloads_with_progress_into_the_hub_cache_and_say_speaks_from_it_offline() {
    let env = setup("hub-fetch");
    env.hub.behaviour.lock().unwrap().token = Some("hf_secret".into());
    let out = fetch(&env, &[("HF_TOKEN", "hf_secret")]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "fetch-model failed:\n{stderr}");

    // The snapshot of the published commit, in the layout huggingface_hub uses.
    let snapshot = PathBuf::from(stdout.trim());
    assert_eq!(snapshot, env.repo_cache().join("snapshots").join(COMMIT), "stdout: {stdout}");
    assert_snapshot_matches(&env, &snapshot);
    assert_eq!(std::fs::read_to_string(env.repo_cache().join("refs/main")).unwrap(), COMMIT);
    assert!(!snapshot.join("ve.safetensors").exists(), "only the files the engine reads");

    // Progress a person can follow: each download announced with its size, and finished.
    assert!(stderr.contains(&format!("hub: downloading {REPO}/s3gen_meanflow.safetensors (")), "{stderr}");
    assert!(stderr.contains("s3gen_meanflow.safetensors: done"), "{stderr}");

    // The token went to the hub and never to the CDN the weights redirect to.
    let log = env.hub.requests();
    assert!(log.iter().any(|r| r.host == "cdn"), "weights come from the CDN: {log:?}");
    assert!(log.iter().filter(|r| r.host == "hub").all(|r| r.authorization.as_deref() == Some("Bearer hf_secret")), "{log:?}");
    assert!(log.iter().filter(|r| r.host == "cdn").all(|r| r.authorization.is_none()), "token leaked to the CDN: {log:?}");

    // A second fetch asks the hub what is current and downloads nothing.
    env.hub.clear_log();
    let again = fetch(&env, &[("HF_TOKEN", "hf_secret")]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(!text(&again.stderr).contains("hub: downloading"), "{}", text(&again.stderr));
    assert!(env.hub.requests().iter().all(|r| r.method == "HEAD" && r.host == "hub"), "{:?}", env.hub.requests());

    // Offline, `say` finds the model in the cache and speaks with it.
    env.hub.clear_log();
    let wav = env.work.join("out.wav");
    let say = env.voxline(
        &["say", "--engine", "chatterbox-nano", "--model-repo", REPO, "--seed", "3", "-o", wav.to_str().unwrap(), "Hello there."],
        &[("HF_HUB_OFFLINE", "1")],
    );
    assert!(say.status.success(), "say failed:\n{}", text(&say.stderr));
    assert!(env.hub.requests().is_empty(), "offline means no requests: {:?}", env.hub.requests());
    let reader = hound::WavReader::open(&wav).expect("a WAV file");
    assert_eq!(reader.spec().sample_rate, 24_000);
    let samples: Vec<i16> = reader.into_samples::<i16>().map(Result::unwrap).collect();
    assert!(samples.len() >= 960, "{} samples", samples.len());
    assert!(samples.iter().any(|&s| s.unsigned_abs() > 30), "not silence");
    std::fs::remove_dir_all(&env.work).ok();
}

#[test]
fn a_corrupt_download_is_refused_and_not_kept() {
    let env = setup("hub-corrupt");
    env.hub.behaviour.lock().unwrap().corrupt = Some("s3gen_meanflow.safetensors".into());
    let out = fetch(&env, &[]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "a corrupt file must fail the fetch:\n{stderr}");
    assert!(stderr.contains("s3gen_meanflow.safetensors") && stderr.contains("arrived corrupt") && stderr.contains("SHA-256"), "{stderr}");
    let blobs: Vec<String> = std::fs::read_dir(env.repo_cache().join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(blobs.iter().all(|b| !b.ends_with(".incomplete")), "no partial file kept: {blobs:?}");
    let sha = common::hub::sha256_file(&env.model.join("s3gen_meanflow.safetensors"));
    assert!(!blobs.contains(&sha), "the corrupt file is not cached under the real hash");

    // The next attempt, with the hub healthy again, succeeds.
    env.hub.behaviour.lock().unwrap().corrupt = None;
    let out = fetch(&env, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_snapshot_matches(&env, &PathBuf::from(text(&out.stdout).trim()));
    std::fs::remove_dir_all(&env.work).ok();
}

#[test]
fn an_interrupted_download_says_so_and_the_next_run_resumes_it() {
    let env = setup("hub-resume");
    let size = std::fs::metadata(env.model.join("s3gen_meanflow.safetensors")).unwrap().len() as usize;
    let cut = size / 3;
    env.hub.behaviour.lock().unwrap().cut = Some(("s3gen_meanflow.safetensors".into(), cut));
    let out = fetch(&env, &[]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("stopped at") && stderr.contains("resume"), "{stderr}");

    env.hub.clear_log();
    let out = fetch(&env, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("resuming at"), "{}", text(&out.stderr));
    let cdn_path = |f: &str| format!("/cdn/{}", common::hub::sha256_file(&env.model.join(f)));
    let log = env.hub.requests();
    let s3gen: Vec<_> = log.iter().filter(|r| r.path == cdn_path("s3gen_meanflow.safetensors")).collect();
    assert_eq!(s3gen.len(), 1, "{log:?}");
    assert_eq!(s3gen[0].range.as_deref(), Some(format!("bytes={cut}-").as_str()), "picks up where it stopped: {log:?}");
    assert!(!log.iter().any(|r| r.path == cdn_path("t3_nano_v1.safetensors")), "the finished file is not fetched again: {log:?}");
    assert_snapshot_matches(&env, &PathBuf::from(text(&out.stdout).trim()));
    std::fs::remove_dir_all(&env.work).ok();
}

#[test]
fn missing_files_bad_tokens_and_an_unreachable_hub_get_clear_errors() {
    let env = setup("hub-errors");
    // A repository the hub does not have.
    let out = env.voxline(&["fetch-model", "chatterbox-nano", "--model-repo", "voxline-test/absent"], &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("has no file t3_nano_v1.safetensors"), "{}", text(&out.stderr));

    // A repository without the built-in voice.
    let partial = env.work.join("partial");
    std::fs::create_dir_all(&partial).unwrap();
    for f in ["t3_nano_v1.safetensors", "s3gen_meanflow.safetensors", "vocab.json", "merges.txt"] {
        std::fs::copy(env.model.join(f), partial.join(f)).unwrap();
    }
    env.hub.publish("voxline-test/no-voice", COMMIT, &partial);
    let out = env.voxline(&["fetch-model", "chatterbox-nano", "--model-repo", "voxline-test/no-voice"], &[]);
    assert!(text(&out.stderr).contains("has no file conds.pt"), "{}", text(&out.stderr));

    // A gated repository without the right token.
    env.hub.behaviour.lock().unwrap().token = Some("hf_right".into());
    let out = fetch(&env, &[("HF_TOKEN", "hf_wrong")]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("HTTP 401") && text(&out.stderr).contains("HF_TOKEN"), "{}", text(&out.stderr));
    env.hub.behaviour.lock().unwrap().token = None;

    // Nothing listening at the endpoint and nothing cached.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let out = env.voxline(&["fetch-model", "chatterbox-nano", "--model-repo", REPO], &[("HF_ENDPOINT", &dead)]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("cannot reach the Hugging Face hub") && text(&out.stderr).contains("--model-dir"), "{}", text(&out.stderr));

    // Once it is cached, an unreachable hub falls back to the cache.
    assert!(fetch(&env, &[]).status.success());
    let out = env.voxline(&["fetch-model", "chatterbox-nano", "--model-repo", REPO], &[("HF_ENDPOINT", &dead)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("using the cached copy"), "{}", text(&out.stderr));

    // Not a repository id: refused before anything touches the disk.
    let out = env.voxline(&["fetch-model", "chatterbox-nano", "--model-repo", "../../etc"], &[]);
    assert!(text(&out.stderr).contains("is not a Hugging Face repository id"), "{}", text(&out.stderr));
    std::fs::remove_dir_all(&env.work).ok();
}

#[test]
fn a_model_directory_with_a_corrupt_weights_file_is_a_clear_error() {
    let work = scratch_dir("chatterbox-corrupt-dir");
    let dir = common::chatterbox::tiny_model(&work.join("model"));
    std::fs::write(dir.join("s3gen_meanflow.safetensors"), b"not a safetensors file").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_voxline"))
        .args(["say", "--engine", "chatterbox-nano", "--model-dir", dir.to_str().unwrap(), "-o", "/dev/null", "Hi."])
        .output_within(Duration::from_secs(120), "voxline say (chatterbox)")
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("s3gen_meanflow.safetensors") && stderr.contains("S3Gen"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    std::fs::remove_dir_all(&work).ok();
}

#[test]
fn two_processes_fetching_at_once_both_get_the_model_and_each_file_is_downloaded_once() {
    let env = setup("hub-concurrent");
    let spawn = || {
        Command::new("timeout")
            .args(["300", env!("CARGO_BIN_EXE_voxline")])
            .args(["fetch-model", "chatterbox-nano", "--model-repo", REPO])
            .env("HF_ENDPOINT", &env.hub.endpoint)
            .env("HF_HOME", &env.home)
            .env_remove("HF_HUB_CACHE")
            .env_remove("HF_TOKEN")
            .env_remove("HF_HUB_OFFLINE")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for out in [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()] {
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_snapshot_matches(&env, &PathBuf::from(text(&out.stdout).trim()));
    }
    let log = env.hub.requests();
    let gets = |f: &str| {
        let path = format!("/cdn/{}", common::hub::sha256_file(&env.model.join(f)));
        log.iter().filter(|r| r.path == path).count()
    };
    assert_eq!(gets("s3gen_meanflow.safetensors"), 1, "{log:?}");
    assert_eq!(gets("t3_nano_v1.safetensors"), 1, "{log:?}");
    std::fs::remove_dir_all(&env.work).ok();
}

#[test]
fn a_cdn_that_redirects_again_is_followed_without_the_token() {
    let env = setup("hub-cdn-hop");
    {
        let mut b = env.hub.behaviour.lock().unwrap();
        b.cdn_hop = true;
        b.token = Some("hf_secret".into());
    }
    let out = fetch(&env, &[("HF_TOKEN", "hf_secret")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_snapshot_matches(&env, &PathBuf::from(text(&out.stdout).trim()));
    let log = env.hub.requests();
    assert!(log.iter().any(|r| r.path.starts_with("/signed/")), "{log:?}");
    assert!(log.iter().filter(|r| r.host == "cdn").all(|r| r.authorization.is_none()), "{log:?}");
    std::fs::remove_dir_all(&env.work).ok();
}
