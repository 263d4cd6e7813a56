//! What an error answer is about, named in its document as S3 names it: `<Key>` for a key
//! that is not there, `<BucketName>` for a bucket, `<UploadId>` for an upload. s3s writes
//! only the code, message and request id; clients that read the others (minio-py's
//! `S3Error.bucket_name` / `object_name`) showed `None`.

use http::Uri;

/// The bucket, key and upload id a request names, taken from its path (path style) or its
/// host (virtual-host style under `domain`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Subject {
    bucket: Option<String>,
    key: Option<String>,
    upload_id: Option<String>,
}

impl Subject {
    /// What the request names (see [`Self::named`]), or nothing for a copy
    /// (`x-amz-copy-source`): its NoSuchKey or NoSuchBucket is about the source, which the
    /// path does not name.
    pub(super) fn of_request<B>(req: &http::Request<B>, domain: Option<&str>) -> Self {
        if req.headers().contains_key("x-amz-copy-source") {
            return Self::default();
        }
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()));
        Self::named(req.uri(), host, domain)
    }

    /// The bucket, key and upload id `uri` names, taken from its path (path style) or its
    /// host (virtual-host style under `domain`).
    fn named(uri: &Uri, host: Option<&str>, domain: Option<&str>) -> Self {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .ok()
                .map(|d| d.into_owned())
        };
        let path = uri.path().strip_prefix('/').unwrap_or(uri.path());
        let host = host.map(|h| match h.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => h,
        });
        let virtual_bucket = match (host, domain) {
            (Some(h), Some(d)) => h
                .strip_suffix(d)
                .and_then(|b| b.strip_suffix('.'))
                .filter(|b| !b.is_empty()),
            _ => None,
        };
        let (bucket, key) = match virtual_bucket {
            Some(b) => (Some(b.to_owned()), path),
            None => {
                let (b, k) = path.split_once('/').unwrap_or((path, ""));
                (decode(b).filter(|b| !b.is_empty()), k)
            }
        };
        let upload_id = uri.query().and_then(|q| {
            q.split('&')
                .find_map(|p| p.strip_prefix("uploadId="))
                .and_then(decode)
        });
        Self {
            bucket,
            key: decode(key).filter(|k| !k.is_empty()),
            upload_id,
        }
    }

    /// Adds what the error document's code is about, if the document is a small error
    /// document without it.
    pub(super) fn name(&self, res: &mut s3s::HttpResponse) {
        if !(res.status().is_client_error() || res.status().is_server_error()) {
            return;
        }
        let Some(text) = super::error::buffered_text(res) else {
            return;
        };
        if text.len() > 8192 {
            return;
        }
        let Some(end) = text.rfind("</Error>") else {
            return;
        };
        let code = text
            .split_once("<Code>")
            .and_then(|(_, rest)| rest.split_once("</Code>"))
            .map(|(c, _)| c);
        let (tag, value) = match code {
            Some("NoSuchKey") => ("Key", &self.key),
            Some("NoSuchBucket" | "BucketNotEmpty" | "BucketAlreadyOwnedByYou") => {
                ("BucketName", &self.bucket)
            }
            Some("NoSuchUpload") => ("UploadId", &self.upload_id),
            _ => return,
        };
        let Some(value) = value else {
            return;
        };
        if text.contains(&format!("<{tag}>")) {
            return;
        }
        let named = format!(
            "{}<{tag}>{}</{tag}>{}",
            &text[..end],
            quick_xml::escape::escape(value.as_str()).replace('\r', "&#13;"),
            &text[end..]
        );
        super::error::set_body(res, named);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(uri: &str, host: &str, domain: Option<&str>) -> Subject {
        Subject::named(&uri.parse().expect("uri"), Some(host), domain)
    }

    #[test]
    fn path_and_virtual_host_style_name_the_same_things() {
        let s = of(
            "/b/dir/a%20%26%3C.txt?uploadId=u%2B1",
            "127.0.0.1:9000",
            None,
        );
        assert_eq!(s.bucket.as_deref(), Some("b"));
        assert_eq!(s.key.as_deref(), Some("dir/a &<.txt"));
        assert_eq!(s.upload_id.as_deref(), Some("u+1"));
        let s = of("/dir/x", "b.s3.local:9000", Some("s3.local"));
        assert_eq!(s.bucket.as_deref(), Some("b"));
        assert_eq!(s.key.as_deref(), Some("dir/x"));
        // The domain itself is path style.
        let s = of("/b/x", "s3.local", Some("s3.local"));
        assert_eq!(
            (s.bucket.as_deref(), s.key.as_deref()),
            (Some("b"), Some("x"))
        );
        let s = of("/b", "h", None);
        assert_eq!((s.bucket.as_deref(), s.key), (Some("b"), None));
    }

    #[test]
    fn the_document_names_the_key_escaped_once() {
        let s = of("/b/a%26%3C", "h", None);
        let doc = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchKey</Code>\
                   <Message>m</Message></Error>";
        let mut res = http::Response::builder()
            .status(404)
            .body(s3s::Body::from(doc.to_owned()))
            .expect("response");
        s.name(&mut res);
        let text = super::super::error::buffered_text(&res).expect("text");
        assert!(text.ends_with("<Key>a&amp;&lt;</Key></Error>"), "{text}");
        s.name(&mut res);
        let again = super::super::error::buffered_text(&res).expect("text");
        assert_eq!(again, text);
    }
}
