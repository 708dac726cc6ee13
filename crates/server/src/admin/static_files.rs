//! Static files under a URL path (`[admin] static_dir`, `static_path`):
//! what the browser example (examples/web-chat) needs from a web server,
//! and no more. GET and HEAD only, no authentication, no directory
//! listings; `prefix/` (and any path ending in `/`) serves `index.html`,
//! the prefix without its slash redirects to it.
//!
//! A request path becomes a file only through [`StaticFiles::file_for`]:
//! every segment must be a plain name (no `..`, `.`, empty segment,
//! hidden name, backslash, `%` or control character), and the file found
//! must still lie inside the directory once symbolic links are resolved,
//! so nothing outside it is reachable. Files are read on glommio's
//! blocking thread, not on the shard that serves clients.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use hyper::header::{HeaderValue, CACHE_CONTROL, LOCATION};
use hyper::{Method, StatusCode};

use super::{respond, ApiError, Resp};

/// Largest file served: the example's files are a few KiB; a mistake
/// (the wrong directory configured) must not read gigabytes into memory.
const MAX_FILE_BYTES: u64 = 16 << 20;

/// A directory served under a URL path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticFiles {
    dir: PathBuf,
    prefix: String,
}

/// What a request path names.
#[derive(Debug, PartialEq, Eq)]
pub enum StaticTarget {
    /// Not under the prefix: another handler's (or nobody's) path.
    Elsewhere,
    /// The prefix without its trailing slash: redirect to the prefix.
    RedirectToPrefix,
    /// A candidate file (it may not exist).
    File(PathBuf),
    /// Under the prefix, but not a name a file may have here (HTTP 404).
    Refused,
}

impl StaticFiles {
    /// Serves `dir` under `prefix` (which starts and ends with `/`, as the
    /// config's validation ensures).
    pub fn new(dir: PathBuf, prefix: String) -> StaticFiles {
        StaticFiles { dir, prefix }
    }

    /// Maps a request path (no query string) to what it names.
    pub fn file_for(&self, path: &str) -> StaticTarget {
        if path == self.prefix.trim_end_matches('/') {
            return StaticTarget::RedirectToPrefix;
        }
        let Some(rest) = path.strip_prefix(&self.prefix) else {
            return StaticTarget::Elsewhere;
        };
        let mut file = self.dir.clone();
        let mut segments: Vec<&str> = rest.split('/').collect();
        if segments.last() == Some(&"") {
            segments.pop();
            segments.push("index.html");
        }
        for segment in segments {
            if !plain_name(segment) {
                return StaticTarget::Refused;
            }
            file.push(segment);
        }
        StaticTarget::File(file)
    }

    /// The answer to `method path` if the path is under the prefix.
    pub async fn answer(&self, method: &Method, path: &str) -> Option<Result<Resp, ApiError>> {
        let file = match self.file_for(path) {
            StaticTarget::Elsewhere => return None,
            StaticTarget::Refused => return Some(Err(ApiError::NotFound)),
            StaticTarget::RedirectToPrefix => return Some(Ok(self.redirect())),
            StaticTarget::File(file) => file,
        };
        if method != Method::GET && method != Method::HEAD {
            return Some(Err(ApiError::MethodNotAllowed(vec!["GET", "HEAD"])));
        }
        let dir = self.dir.clone();
        let read = glommio::executor()
            .spawn_blocking(move || read_inside(&dir, &file).map(|bytes| (file, bytes)))
            .await;
        let Some((file, bytes)) = read else {
            return Some(Err(ApiError::NotFound));
        };
        let body = if method == Method::HEAD {
            Bytes::new()
        } else {
            Bytes::from(bytes)
        };
        let mut r = respond(StatusCode::OK, content_type(&file), body);
        // The example changes while people work on it: always revalidate.
        r.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        Some(Ok(r))
    }

    fn redirect(&self) -> Resp {
        let mut r = respond(StatusCode::PERMANENT_REDIRECT, "text/plain", "");
        if let Ok(location) = HeaderValue::from_str(&self.prefix) {
            r.headers_mut().insert(LOCATION, location);
        }
        r
    }
}

/// A file or directory name that cannot climb out or hide: not empty, not
/// `.`/`..` or any dot file, no backslash, no `%` (nothing is
/// percent-decoded, so an encoded name would never match anyway), no
/// control characters.
fn plain_name(segment: &str) -> bool {
    !segment.is_empty()
        && !segment.starts_with('.')
        && !segment
            .chars()
            .any(|c| c == '\\' || c == '%' || c.is_control())
}

/// The bytes of `file` if it is a regular file of at most
/// [`MAX_FILE_BYTES`] inside `dir` after resolving symbolic links.
fn read_inside(dir: &Path, file: &Path) -> Option<Vec<u8>> {
    let dir = std::fs::canonicalize(dir).ok()?;
    let file = std::fs::canonicalize(file).ok()?;
    let meta = std::fs::metadata(&file).ok()?;
    if !file.starts_with(&dir) || !meta.is_file() || meta.len() > MAX_FILE_BYTES {
        return None;
    }
    std::fs::read(&file).ok()
}

/// The media type of a file, by its extension (what the example uses and
/// what a small web app is made of; anything else is opaque bytes).
fn content_type(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> StaticFiles {
        StaticFiles::new(PathBuf::from("/srv/chat"), "/web/".into())
    }

    #[test]
    fn paths_under_the_prefix_name_files_in_the_directory() {
        let f = files();
        let file = |p: &str| StaticTarget::File(PathBuf::from(p));
        assert_eq!(f.file_for("/web/"), file("/srv/chat/index.html"));
        assert_eq!(f.file_for("/web/app.js"), file("/srv/chat/app.js"));
        assert_eq!(
            f.file_for("/web/sdk/proto/index.js"),
            file("/srv/chat/sdk/proto/index.js")
        );
        assert_eq!(f.file_for("/web/sdk/"), file("/srv/chat/sdk/index.html"));
        assert_eq!(f.file_for("/web"), StaticTarget::RedirectToPrefix);
        for elsewhere in ["/", "/v1/publish", "/webx", "/healthz", "/we"] {
            assert_eq!(
                f.file_for(elsewhere),
                StaticTarget::Elsewhere,
                "{elsewhere}"
            );
        }
    }

    #[test]
    fn no_request_path_climbs_out_of_the_directory() {
        let f = files();
        for bad in [
            "/web/..",
            "/web/../etc/passwd",
            "/web/sdk/../../x",
            "/web/./app.js",
            "/web//app.js",
            "/web/.git/config",
            "/web/%2e%2e/x",
            "/web/a\\..\\b",
            "/web/a\0b",
        ] {
            assert_eq!(f.file_for(bad), StaticTarget::Refused, "{bad:?}");
        }
    }

    #[test]
    fn media_types_follow_the_extension() {
        assert_eq!(
            content_type(Path::new("a/app.js")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("index.html")),
            "text/html; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("blob")), "application/octet-stream");
    }
}
