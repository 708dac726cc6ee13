//! Build facts for `surepush_build_info`: the git commit the binary was
//! built from and the compiler that built it. Built outside a git checkout
//! (a source tarball), the commit is `unknown`.

use std::process::Command;

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = output(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    let sha =
        output("git", &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    // Rebuild when HEAD moves: HEAD itself (a checkout) and the branch it
    // names (a commit); in a worktree both live under the common git dir.
    for path in [
        Some("HEAD".to_string()),
        output("git", &["symbolic-ref", "-q", "HEAD"]),
    ]
    .into_iter()
    .flatten()
    {
        // A missing file (a packed ref) would rerun this on every build.
        let file = output("git", &["rev-parse", "--git-path", &path]);
        if let Some(file) = file.filter(|f| std::path::Path::new(f).exists()) {
            println!("cargo:rerun-if-changed={file}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-env=SUREPUSH_GIT_SHA={sha}");
    println!("cargo:rustc-env=SUREPUSH_RUSTC_VERSION={rustc_version}");
}
