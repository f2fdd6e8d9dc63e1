//! Repository rules as tests, naming file and line: no function of the
//! xtask (outside tests) runs past `MAX_FN_LINES` lines.

use std::path::Path;

/// The longest a function may be, from its `fn` line to its closing brace.
const MAX_FN_LINES: usize = 80;

/// The source with string and char literals and comments blanked out (same
/// length and line breaks), so braces inside them are not counted.
fn code_only(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |ch: char| if ch == '\n' { '\n' } else { ' ' };
    while i < c.len() {
        let rest = &c[i..];
        let skip = if rest.starts_with(&['/', '/']) {
            rest.iter().position(|&ch| ch == '\n').unwrap_or(rest.len())
        } else if rest.starts_with(&['/', '*']) {
            rest.windows(2).position(|w| w == ['*', '/']).map_or(rest.len(), |p| p + 2)
        } else if rest[0] == '"' || (rest[0] == 'r' && matches!(rest.get(1), Some('"' | '#'))) {
            string_len(rest)
        } else if rest[0] == '\'' {
            char_literal_len(rest)
        } else {
            0
        };
        if skip == 0 {
            out.push(c[i]);
            i += 1;
        } else {
            out.extend(rest[..skip].iter().map(|&ch| blank(ch)));
            i += skip;
        }
    }
    out
}

/// Length of a string literal at the start of `s` (plain or raw).
fn string_len(s: &[char]) -> usize {
    if s[0] == 'r' {
        let hashes = s[1..].iter().take_while(|&&ch| ch == '#').count();
        let open = 1 + hashes + 1;
        let close: Vec<char> = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
        return s[open..]
            .windows(close.len())
            .position(|w| w == close.as_slice())
            .map_or(s.len(), |p| open + p + close.len());
    }
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    s.len()
}

/// Length of a char literal at the start of `s`, or 0 for a lifetime.
fn char_literal_len(s: &[char]) -> usize {
    match (s.get(1), s.get(2)) {
        (Some('\\'), _) => s[2..].iter().position(|&ch| ch == '\'').map_or(0, |p| p + 3),
        (Some(_), Some('\'')) => 3,
        _ => 0,
    }
}

/// (line, name, length) of every function of `text` longer than `max` lines,
/// up to the first `#[cfg(test)]`.
fn long_functions(text: &str, max: usize) -> Vec<(usize, String, usize)> {
    let code = code_only(text);
    let lines: Vec<&str> = code.lines().collect();
    let mut found = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let Some(name) = fn_name(line) else { continue };
        let mut depth = 0i32;
        let mut opened = false;
        for (m, body) in lines.iter().enumerate().skip(n) {
            for ch in body.chars() {
                match ch {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    ';' if !opened && depth == 0 => break,
                    _ => {}
                }
            }
            if !opened && body.trim_end().ends_with(';') {
                break;
            }
            if opened && depth == 0 {
                if m + 1 - n > max {
                    found.push((n + 1, name.clone(), m + 1 - n));
                }
                break;
            }
        }
    }
    found
}

/// The name of the function a line declares, if it does.
fn fn_name(line: &str) -> Option<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "fn")?;
    let before_ok = words[..at]
        .iter()
        .all(|w| matches!(*w, "pub" | "async" | "const" | "unsafe" | "extern") || w.starts_with("pub("));
    let name = words.get(at + 1)?.split(['(', '<']).next()?.to_owned();
    (before_ok && !name.is_empty()).then_some(name)
}

#[test]
fn no_function_is_longer_than_80_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    for entry in walkdir::WalkDir::new(&src).sort_by_file_name().into_iter().filter_map(|e| e.ok()) {
        let name = entry.path().strip_prefix(&src).expect("below src").to_string_lossy().into_owned();
        if !name.ends_with(".rs") || name.ends_with("tests.rs") || name == "layers.rs" || name == "tidy.rs" {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).expect("readable source");
        for (line, fname, len) in long_functions(&text, MAX_FN_LINES) {
            problems.push(format!(
                "xtask/src/{name}:{line}: fn {fname} has {len} lines (at most {MAX_FN_LINES}): split it"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_counter_skips_literals_and_comments() {
    let text = "fn a() {\n    let s = \"}}\";\n    let c = '{';\n    // }\n    let r = r#\"{\"#;\n}\nfn b<'x>(v: &'x str) -> &'x str {\n    v\n}\nfn c();\n";
    assert_eq!(long_functions(text, 5), vec![(1, "a".to_owned(), 6)]);
    assert!(long_functions(text, 6).is_empty());
    assert_eq!(fn_name("    pub(crate) async fn go(x: u8) {"), Some("go".to_owned()));
    assert_eq!(fn_name("let f = |x| x; // fn not"), None);
}
