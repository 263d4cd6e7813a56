//! Browser-form uploads (POST Object): what s3s 0.14 leaves out of the form. It maps only the
//! `x-amz-*` spellings of fields S3 documents without the prefix, so a form's `acl` (a
//! public ACL that must be refused, not dropped) and `tagging` (tags that must be kept) were
//! ignored; and it keeps no file name for a key's `${filename}`. The form's fields are read
//! here (with `multer`, up to the file, within s3s's limits) before s3s reads them again from
//! the same bytes; what they say reaches the PUT as [`FormFields`] in the request's
//! extensions.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use s3s::StdError;
use s3s::dto::Tagging;

/// The fields of a browser form that s3s does not map, and the uploaded file's name.
#[derive(Clone, Debug, Default)]
pub struct FormFields {
    pub acl: Option<String>,
    pub tagging: Option<String>,
    pub filename: Option<String>,
    /// The fields could not be read here (a form this parser refuses, or larger than the
    /// limits): the upload is refused rather than taken without them.
    pub unread: bool,
}

impl FormFields {
    /// Refuses a form whose fields could not be read here.
    pub fn check(&self) -> s3s::S3Result<()> {
        if self.unread {
            return Err(s3s::s3_error!(
                MalformedPOSTRequest,
                "The body of your POST request is not well-formed multipart/form-data."
            ));
        }
        Ok(())
    }

    /// The form's `tagging` document (`<Tagging><TagSet><Tag>…`) as tags.
    pub fn tags(&self) -> s3s::S3Result<Option<crate::store::Tags>> {
        let Some(xml) = self.tagging.as_deref() else {
            return Ok(None);
        };
        let mut d = s3s::xml::Deserializer::new(xml.as_bytes());
        let parsed = <Tagging as s3s::xml::Deserialize>::deserialize(&mut d)
            .and_then(|t| d.expect_eof().map(|()| t))
            .map_err(|_| {
                s3s::s3_error!(
                    MalformedXML,
                    "The form's tagging field is not a Tagging document"
                )
            })?;
        let tags = super::convert::tags_from_dto(parsed.tag_set)?;
        super::convert::validate_tags(&tags)?;
        Ok(Some(tags))
    }

    /// `key` with `${filename}` replaced by the uploaded file's name, as S3 does.
    pub fn key(&self, key: &str) -> String {
        match &self.filename {
            Some(name) if key.contains("${filename}") => key.replace("${filename}", name),
            _ => key.to_owned(),
        }
    }
}

/// Reads the form's fields off the front of `req`'s body into its extensions, and gives the
/// body back whole for s3s. A form that does not parse is left for s3s to refuse.
pub async fn read_fields(req: &mut http::Request<s3s::Body>) {
    let Some(boundary) = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| multer::parse_boundary(v).ok())
    else {
        return;
    };
    let shared = Arc::new(Mutex::new(Replay {
        inner: Some(std::mem::take(req.body_mut())),
        seen: Vec::new(),
        broken: false,
    }));
    let fields = fields(Recording(shared.clone()), boundary).await;
    // The parser held the other end of `shared`; it is done with it.
    let (inner, seen, broken) = {
        let mut r = shared.lock().unwrap_or_else(|e| e.into_inner());
        (r.inner.take(), std::mem::take(&mut r.seen), r.broken)
    };
    let replay = futures::stream::iter(seen.into_iter().map(Ok::<_, StdError>));
    let body: s3s::stream::DynByteStream = match inner {
        Some(rest) if !broken => Box::pin(Slices::new(replay.chain(rest))),
        _ => {
            let failed: StdError = "the request body failed while its form was read".into();
            Box::pin(Slices::new(
                replay.chain(futures::stream::iter([Err(failed)])),
            ))
        }
    };
    *req.body_mut() = s3s::Body::from(body);
    req.extensions_mut().insert(fields.unwrap_or(FormFields {
        unread: true,
        ..Default::default()
    }));
}

/// s3s's limits on a form's fields (its defaults, which Ferry keeps).
const MAX_FIELD: u64 = 1024 * 1024;
const MAX_FIELDS: u64 = 20 * 1024 * 1024;
const MAX_PARTS: usize = 1000;

/// The fields before the file (which ends the form, as S3 reads it), or `None` for a form
/// that does not parse within s3s's limits: s3s refuses that one itself.
async fn fields(body: Recording, boundary: String) -> Option<FormFields> {
    // The whole of what is read here (and so kept for the replay) is bounded too: a part
    // whose headers never end would otherwise be read for ever, before any signature check.
    let limits = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .per_field(MAX_FIELD)
            .whole_stream(MAX_FIELDS + MAX_FIELD),
    );
    let mut form = multer::Multipart::with_constraints(body, boundary, limits);
    let mut out = FormFields::default();
    let (mut total, mut parts) = (0u64, 0usize);
    while let Some(field) = form.next_field().await.ok()? {
        parts += 1;
        if parts > MAX_PARTS {
            return None;
        }
        // s3s takes field names in any case.
        let name = field.name().unwrap_or_default().to_ascii_lowercase();
        if name == "file" {
            out.filename = field
                .file_name()
                .map(str::to_owned)
                .filter(|n| !n.is_empty());
            return Some(out);
        }
        let value = field.text().await.ok()?;
        total += value.len() as u64;
        if total > MAX_FIELDS {
            return None;
        }
        match name.as_str() {
            "acl" => out.acl = Some(value),
            "tagging" => out.tagging = Some(value),
            _ => {}
        }
    }
    None
}

/// The body and the bytes taken from it so far.
struct Replay {
    inner: Option<s3s::Body>,
    seen: Vec<Bytes>,
    /// The body failed while the fields were read: the replay ends with an error there.
    broken: bool,
}

/// The body as the form parser reads it, keeping a copy of every byte it takes.
struct Recording(Arc<Mutex<Replay>>);

impl Stream for Recording {
    type Item = Result<Bytes, StdError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut r = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(inner) = r.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let next = Pin::new(inner).poll_next(cx);
        match &next {
            Poll::Ready(Some(Ok(b))) => r.seen.push(b.clone()),
            Poll::Ready(Some(Err(_))) => r.broken = true,
            _ => {}
        }
        next
    }
}

/// The body in pieces of at most [`PIECE`] bytes, of unknown remaining length. s3s 0.14's
/// form parser joins a piece that ends in a `\r` (a possible start of the boundary) with the
/// next one, and refuses the upload when the two pass 64 KiB: random files of a few MiB
/// failed about one time in four with "failed to read file stream".
struct Slices<S> {
    inner: S,
    left: Bytes,
}

const PIECE: usize = 16 * 1024;

impl<S> Slices<S> {
    fn new(inner: S) -> Self {
        Slices {
            inner,
            left: Bytes::new(),
        }
    }
}

impl<S: Stream<Item = Result<Bytes, StdError>> + Unpin> Stream for Slices<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if !self.left.is_empty() {
                let n = self.left.len().min(PIECE);
                return Poll::Ready(Some(Ok(self.left.split_to(n))));
            }
            match std::task::ready!(Pin::new(&mut self.inner).poll_next(cx)) {
                Some(Ok(b)) => self.left = b,
                other => return Poll::Ready(other),
            }
        }
    }
}

impl<S: Stream<Item = Result<Bytes, StdError>> + Unpin> s3s::stream::ByteStream for Slices<S> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slices_keep_every_byte_in_order_in_small_pieces() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let chunks = [&data[..5], &data[5..100_005], &data[100_005..]]
            .map(|c| Ok::<_, StdError>(Bytes::copy_from_slice(c)));
        let pieces: Vec<Bytes> = Slices::new(futures::stream::iter(chunks))
            .map(|p| p.expect("piece"))
            .collect()
            .await;
        assert!(pieces.iter().all(|p| p.len() <= PIECE && !p.is_empty()));
        assert_eq!(pieces.concat(), data);
    }
}

/// Where a form upload's object is, for its answer (see [`answer_headers`]).
#[derive(Clone)]
pub(super) struct Posted {
    pub location: String,
}

/// What AWS answers a form upload with and s3s 0.14 leaves out: the object's `ETag` and
/// version id as headers (browser uploaders read them), and its URL (`Location`: set on the
/// 201 and 204 answers by [`mend_answer`], not on a 303, whose `Location` is the redirect).
pub(super) fn answer_headers<T>(
    resp: &mut s3s::S3Response<T>,
    request: &http::HeaderMap,
    bucket: &crate::store::BucketName,
    key: &crate::store::ObjectKey,
    meta: &crate::store::ObjectMeta,
) {
    if let Ok(v) = http::HeaderValue::from_str(&format!("\"{}\"", meta.etag)) {
        resp.headers.insert(http::header::ETAG, v);
    }
    if let Some(v) =
        super::convert::version_header(meta).and_then(|v| http::HeaderValue::from_str(&v).ok())
    {
        resp.headers.insert("x-amz-version-id", v);
    }
    let Some(host) = request
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return;
    };
    let scheme = request
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|v| *v == "https")
        .unwrap_or("http");
    let path: Vec<String> = key
        .as_str()
        .split('/')
        .map(|s| urlencoding::encode(s).into_owned())
        .collect();
    // Virtual-host style (`bucket.domain`) keeps the bucket in the host, as the client asked.
    let location = match host.starts_with(&format!("{}.", bucket.as_str())) {
        true => format!("{scheme}://{host}/{}", path.join("/")),
        false => format!("{scheme}://{host}/{}/{}", bucket.as_str(), path.join("/")),
    };
    resp.extensions.insert(Posted { location });
}

/// A form upload's 201 or 204 answer, as AWS gives it: its `Location` header, and in the 201's
/// XML the quoted `ETag` and the object's URL (s3s writes the ETag bare and a path).
pub(super) fn mend_answer(res: &mut s3s::HttpResponse) {
    let Some(posted) = res.extensions_mut().remove::<Posted>() else {
        return;
    };
    if !matches!(
        res.status(),
        http::StatusCode::CREATED | http::StatusCode::NO_CONTENT | http::StatusCode::OK
    ) {
        return;
    }
    if let Ok(v) = http::HeaderValue::from_str(&posted.location) {
        res.headers_mut().insert(http::header::LOCATION, v);
    }
    if res.status() != http::StatusCode::CREATED {
        return;
    }
    let Some(body) = res.body().bytes() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return;
    };
    let mut xml = text.to_owned();
    if let (Some(a), Some(b)) = (xml.find("<ETag>"), xml.find("</ETag>")) {
        let inner = xml[a + 6..b].to_owned();
        if !inner.starts_with("&quot;") && !inner.starts_with('"') {
            xml.replace_range(a + 6..b, &format!("&quot;{inner}&quot;"));
        }
    }
    if let (Some(a), Some(b)) = (xml.find("<Location>"), xml.find("</Location>")) {
        let escaped = posted
            .location
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        xml.replace_range(a + 10..b, &escaped);
    }
    let len = xml.len();
    *res.body_mut() = s3s::Body::from(xml);
    if let Ok(v) = http::HeaderValue::from_str(&len.to_string()) {
        res.headers_mut().insert(http::header::CONTENT_LENGTH, v);
    }
}
