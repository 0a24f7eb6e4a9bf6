//! An ordered list of HTTP header fields that share the bytes of the message head.
//!
//! Why this shape: a parsed head is frozen into one `Bytes` and every name and value is a slice of
//! it, so parsing copies nothing and a header list can travel to another shard (or be stored in a
//! cached object) without re-serialising. Order and duplicates are kept because HTTP/1.1 forwarding
//! must preserve them; lookups are case-insensitive linear scans, which beat hashing for the dozen
//! or so fields a real message has.

use bytes::Bytes;

/// One header field. `name` keeps the case it arrived with; comparisons ignore case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub name: Bytes,
    pub value: Bytes,
}

/// The header fields of one request or response, in arrival order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    fields: Vec<Header>,
}

impl Headers {
    pub fn new() -> Self {
        Headers { fields: Vec::new() }
    }

    pub fn with_capacity(n: usize) -> Self {
        Headers {
            fields: Vec::with_capacity(n),
        }
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Header> {
        self.fields.iter()
    }

    /// The value of the first field called `name` (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.fields
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| &h.value)
    }

    /// The value of the first field called `name`, if it is valid UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every value of the fields called `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.fields
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| &h.value)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Appends a field, keeping any existing ones with the same name.
    pub fn append(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) {
        self.fields.push(Header {
            name: name.into(),
            value: value.into(),
        });
    }

    /// Replaces every field called `name` with one field (placed where the first one was).
    pub fn set(&mut self, name: &'static str, value: impl Into<Bytes>) {
        if let Some(value) = self.replace(name, value.into()) {
            self.append(Bytes::from_static(name.as_bytes()), value);
        }
    }

    /// [`Headers::set`] for a name known only at run time: if a field called `name` exists,
    /// the first one gets `value` in place and later ones are removed (`None`); otherwise
    /// nothing changes and `value` comes back, for the caller to append with the spelling it
    /// wants.
    pub fn replace(&mut self, name: &str, value: Bytes) -> Option<Bytes> {
        let Some(i) = self
            .fields
            .iter()
            .position(|h| h.name.eq_ignore_ascii_case(name.as_bytes()))
        else {
            return Some(value);
        };
        self.fields[i].value = value;
        let mut j = i + 1;
        while j < self.fields.len() {
            if self.fields[j].name.eq_ignore_ascii_case(name.as_bytes()) {
                self.fields.remove(j);
            } else {
                j += 1;
            }
        }
        None
    }

    /// Removes every field called `name`; returns how many were removed.
    pub fn remove(&mut self, name: &str) -> usize {
        let before = self.fields.len();
        self.fields
            .retain(|h| !h.name.eq_ignore_ascii_case(name.as_bytes()));
        before - self.fields.len()
    }

    /// Keeps only the fields for which `keep` returns true.
    pub fn retain(&mut self, keep: impl FnMut(&Header) -> bool) {
        self.fields.retain(keep);
    }

    /// True if any comma-separated element of any field `name` equals `token` (case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name).any(|v| {
            v.split(|&b| b == b',')
                .any(|t| trim(t).eq_ignore_ascii_case(token.as_bytes()))
        })
    }

    /// Serialises every field as `Name: value\r\n` onto `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        for h in &self.fields {
            out.extend_from_slice(&h.name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(&h.value);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Bytes `write_to` would produce.
    pub fn wire_len(&self) -> usize {
        self.fields
            .iter()
            .map(|h| h.name.len() + h.value.len() + 4)
            .sum()
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;
    fn into_iter(self) -> Self::IntoIter {
        self.fields.iter()
    }
}

/// Trims optional white space (SP / HTAB) from both ends.
pub fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_is_case_insensitive_and_ordered() {
        let mut h = Headers::new();
        h.append("Host", "a");
        h.append("X-A", "1");
        h.append("x-a", "2");
        assert_eq!(h.get("host").map(|v| &v[..]), Some(&b"a"[..]));
        let all: Vec<_> = h.get_all("X-A").map(|v| v.to_vec()).collect();
        assert_eq!(all, vec![b"1".to_vec(), b"2".to_vec()]);
        h.set("X-A", "3");
        assert_eq!(h.len(), 2);
        assert_eq!(h.get("x-a").map(|v| &v[..]), Some(&b"3"[..]));
        assert_eq!(h.remove("X-a"), 1);
        assert!(!h.contains("x-a"));
    }

    #[test]
    fn tokens_and_wire_form() {
        let mut h = Headers::new();
        h.append("Connection", "keep-alive, Upgrade");
        assert!(h.has_token("connection", "upgrade"));
        assert!(!h.has_token("connection", "close"));
        let mut out = Vec::new();
        h.write_to(&mut out);
        assert_eq!(out, b"Connection: keep-alive, Upgrade\r\n");
        assert_eq!(h.wire_len(), out.len());
        assert_eq!(trim(b" \tx y\t "), b"x y");
    }
}
