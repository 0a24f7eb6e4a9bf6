//! Reason phrases for status codes.
//!
//! Why a plain `match`: the table is small and fixed, the compiler turns it into a jump table,
//! and returning `&'static str` lets callers write the phrase without allocating. The phrases
//! are the ones Varnish Cache 7.1 uses (its `tbl/http_response.h`), so synthetic responses and
//! `resp.reason` defaults read the same as Varnish's — e.g. 413 is "Request Entity Too Large" and
//! 414 "Request-URI Too Long", not the RFC 9110 wording.

/// The standard reason phrase for `status`, or `"Unknown"` for codes without one.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        306 => "(Unused)",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Requested Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Entity",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_codes_have_phrases() {
        assert_eq!(reason_phrase(200), "OK");
        assert_eq!(reason_phrase(304), "Not Modified");
        assert_eq!(reason_phrase(404), "Not Found");
        assert_eq!(reason_phrase(414), "Request-URI Too Long");
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
        assert_eq!(reason_phrase(503), "Service Unavailable");
        assert_eq!(reason_phrase(505), "HTTP Version Not Supported");
    }

    #[test]
    fn unknown_codes() {
        assert_eq!(reason_phrase(0), "Unknown");
        assert_eq!(reason_phrase(299), "Unknown");
        assert_eq!(reason_phrase(999), "Unknown");
    }
}
