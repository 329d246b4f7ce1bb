//! The admin port's live dashboard at `GET /`: a page that reads `/stats`
//! every second and draws each shard's last minutes. Its files live in
//! `clients/dashboard/` and are embedded in the binary; they hold no data
//! (everything comes from `/stats`, with the admin token when one is set),
//! and run under a policy that lets them load only themselves and fetch
//! only this origin.

use super::http::Response;

/// The dashboard's Content-Security-Policy.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// The dashboard's files: path, content type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("../../clients/dashboard/index.html"),
    ),
    (
        "/dashboard.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../clients/dashboard/dashboard.js"),
    ),
    (
        "/dashboard.css",
        "text/css; charset=utf-8",
        include_bytes!("../../clients/dashboard/dashboard.css"),
    ),
];

/// Whether `path` is one of the dashboard's files.
pub fn is_page(path: &str) -> bool {
    FILES.iter().any(|(p, _, _)| *p == path)
}

/// The dashboard file at `path`, if it is one.
pub fn page(path: &str) -> Option<Response> {
    let (_, content_type, body) = FILES.iter().find(|(p, _, _)| *p == path)?;
    let mut response = Response::new(200, content_type, body.to_vec());
    response.headers.extend([
        ("Content-Security-Policy", CSP.to_string()),
        ("X-Content-Type-Options", "nosniff".to_string()),
        ("Referrer-Policy", "no-referrer".to_string()),
    ]);
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_files_with_their_types_and_policy() {
        let index = page("/").unwrap();
        assert_eq!(index.content_type, "text/html; charset=utf-8");
        assert!(String::from_utf8_lossy(&index.body).contains("/dashboard.js"));
        assert!(index
            .headers
            .iter()
            .any(|(k, v)| *k == "Content-Security-Policy" && v == CSP));
        assert_eq!(
            page("/dashboard.js").unwrap().content_type,
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            page("/dashboard.css").unwrap().content_type,
            "text/css; charset=utf-8"
        );
        assert!(page("/stats").is_none());
        assert!(page("/dashboard.json").is_none());
    }
}
