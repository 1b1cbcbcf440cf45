use super::*;

#[test]
fn repo_ids_and_revisions_are_checked_before_any_path_is_built() {
    assert!(valid_repo("ResembleAI/chatterbox-turbo"));
    assert!(valid_repo("a/b.c_d-e"));
    for bad in ["", "gpt2", "a/b/c", "../x", "a/..", "a/b c", "/a"] {
        assert!(!valid_repo(bad), "{bad}");
    }
    assert!(valid_revision("main"));
    assert!(valid_revision("refs/pr/1"));
    assert!(valid_revision("749d1c1a46eb10492095d68fbcf55691ccf137cd"));
    for bad in ["", "../../etc", "a//b", "a b", "/main"] {
        assert!(!valid_revision(bad), "{bad}");
    }
}

#[test]
fn origin_is_scheme_and_authority() {
    assert_eq!(origin("https://huggingface.co/a/b/resolve/main/x"), "https://huggingface.co");
    assert_eq!(origin("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
    assert_eq!(origin("http://127.0.0.1:8080/"), "http://127.0.0.1:8080");
}

#[test]
fn hashes_match_what_git_and_lfs_name_files_by() {
    let dir = std::env::temp_dir().join(format!("voxline-hub-hash-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let f = dir.join("x");
    fs::write(&f, b"hello\n").unwrap();
    // `git hash-object` of "hello\n" and `sha256sum` of it.
    let git = content_hash(&f, "ce013625030ba8dba906f756967f9e9ca394464a", 6).unwrap().unwrap();
    assert_eq!(git, ("git SHA-1", "ce013625030ba8dba906f756967f9e9ca394464a".to_string()));
    let lfs = content_hash(&f, &"0".repeat(64), 6).unwrap().unwrap();
    assert_eq!(lfs.1, "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
    assert!(content_hash(&f, "not-a-hash", 6).unwrap().is_none());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn offline_without_a_cache_says_what_is_missing() {
    let dir = std::env::temp_dir().join(format!("voxline-hub-offline-{}", std::process::id()));
    let hub = Hub::new("http://127.0.0.1:9", dir.clone(), None, true);
    let err = hub
        .snapshot("ResembleAI/chatterbox-turbo", "main", FileSet { required: &["conds.pt"], optional: &[] }, &mut ())
        .unwrap_err();
    assert!(matches!(err, HubError::NotCached { .. }), "{err}");
    assert!(err.to_string().contains("HF_HUB_OFFLINE"), "{err}");
}

#[test]
fn sizes_read_as_people_write_them() {
    assert_eq!(human_bytes(512), "512 B");
    assert_eq!(human_bytes(12_300), "12 KB");
    assert_eq!(human_bytes(1_500_000), "1.5 MB");
    assert_eq!(human_bytes(1_200_000_000), "1.2 GB");
}
