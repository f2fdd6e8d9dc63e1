use super::*;

fn jar(coords: &str, bytes: &[u8]) -> Jar {
    Jar { coords: coords.to_owned(), file: file_name(coords).unwrap(), sha256: sha256_hex(bytes) }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pysvc-kafka-jars-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_checked_in_list_pins_this_kafka_release() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let text = std::fs::read_to_string(root.join(JARS_TSV)).unwrap();
    let jars = parse(&text).unwrap();
    for artifact in ["kafka_2.13", "kafka-server", "kafka-storage", "kafka-metadata", "kafka-raft", "kafka-tools"] {
        let coords = format!("org.apache.kafka:{artifact}:{KAFKA_VERSION}");
        assert!(jars.iter().any(|j| j.coords == coords), "{JARS_TSV} lacks {coords}");
    }
    assert_eq!(render(&jars), text, "{JARS_TSV} is not in the form `render` writes");
    // The pom's default version is the one `--update-kafka-jars` passes.
    let pom = std::fs::read_to_string(root.join(POM)).unwrap();
    assert!(pom.contains(&format!("<kafka.version>{KAFKA_VERSION}</kafka.version>")), "{POM}: kafka.version");
}

#[test]
fn parse_names_the_line_and_the_fix() {
    let good = jar("org.example:lib:1.0", b"x");
    let text = render(std::slice::from_ref(&good));
    assert_eq!(parse(&text).unwrap(), vec![good.clone()]);
    let classified = jar("org.example:lib:1.0:linux", b"y");
    assert_eq!(classified.file, "lib-1.0-linux.jar");
    assert_eq!(classified.repo_path(), "org/example/lib/1.0/lib-1.0-linux.jar");

    let err = parse("# header\norg.example:lib:1.0 lib-1.0.jar\n").unwrap_err().to_string();
    assert!(err.contains("jars.tsv:2:") && err.contains("--update-kafka-jars"), "{err}");
    let err = parse(&format!("org.example:lib:1.0\tother.jar\t{}\n", good.sha256)).unwrap_err().to_string();
    assert!(err.contains(":1: the file of org.example:lib:1.0 is lib-1.0.jar, not other.jar"), "{err}");
    let err = parse("org.example:lib:1.0\tlib-1.0.jar\tABC\n").unwrap_err().to_string();
    assert!(err.contains("is not a sha256"), "{err}");
    let twice = format!("{}{}", text, text.lines().last().unwrap());
    assert!(parse(&twice).unwrap_err().to_string().contains("listed twice"));
    assert!(parse("# nothing\n").unwrap_err().to_string().contains("lists no jar"));
}

#[test]
fn maven_list_lines_become_coordinates_and_paths() {
    let text = "\nThe following files have been resolved:\n   \
        org.apache.kafka:kafka_2.13:jar:4.4.0:compile:/m2/org/apache/kafka/kafka_2.13/4.4.0/kafka_2.13-4.4.0.jar\n   \
        com.github.luben:zstd-jni:jar:linux:1.5.7:runtime:/m2/zstd-jni-1.5.7-linux.jar\n";
    let listed = parse_maven_list(text).unwrap();
    assert_eq!(listed[0].0, "org.apache.kafka:kafka_2.13:4.4.0");
    assert_eq!(listed[0].1, PathBuf::from("/m2/org/apache/kafka/kafka_2.13/4.4.0/kafka_2.13-4.4.0.jar"));
    assert_eq!(listed[1].0, "com.github.luben:zstd-jni:1.5.7:linux");
    let err = parse_maven_list("   a:b:jar:1:compile\n   a:b:pom:1:compile:x\n").unwrap_err().to_string();
    assert!(err.contains("without the jar's path"), "{err}");
}

/// Downloads from a `file://` repository, then builds from the cache with
/// the repository gone; a wrong hash is an error with both hashes and the fix.
#[test]
fn jars_are_verified_cached_and_reused_offline() {
    let sh = Shell::new().unwrap();
    let dir = temp_dir("fetch");
    let (repo, cache) = (dir.join("repo"), dir.join("cache"));
    let good = jar("org.example:lib:1.0", b"the jar");
    let file = repo.join(good.repo_path());
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, b"the jar").unwrap();
    let url = format!("file://{}", repo.display());

    let got = fetch_all(&sh, std::slice::from_ref(&good), &cache, &url).unwrap();
    assert_eq!(got, vec![("lib-1.0.jar".to_owned(), b"the jar".to_vec())]);
    std::fs::remove_dir_all(&repo).unwrap();
    let again = fetch_all(&sh, std::slice::from_ref(&good), &cache, &url).unwrap();
    assert_eq!(again, got, "the cache serves a machine without the repository");

    // A corrupted cache entry is fetched again; here the repository is gone.
    std::fs::write(cache.join("lib-1.0.jar"), b"tampered").unwrap();
    let err = fetch_all(&sh, std::slice::from_ref(&good), &cache, &url).unwrap_err().to_string();
    assert!(err.contains("cannot download lib-1.0.jar (org.example:lib:1.0)") && err.contains("copy"), "{err}");

    // The repository serves another file than the one pinned.
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, b"another jar").unwrap();
    let err = fetch_all(&sh, std::slice::from_ref(&good), &cache, &url).unwrap_err().to_string();
    assert!(err.contains(&sha256_hex(b"another jar")) && err.contains(&good.sha256), "{err}");
    assert!(err.contains("--update-kafka-jars"), "{err}");
    assert!(!cache.join("lib-1.0.jar").exists(), "a file that failed its check is not kept");
    std::fs::remove_dir_all(&dir).unwrap();
}
