//! The folder listing page: entries in, HTML out (names escaped for HTML and percent-encoded in
//! links, folders first, `../` below the top). Reading the folder is `server::fs`'s job.

use std::fmt::Write as _;

use super::path::{percent_encode, CleanPath};

/// Entries shown in one folder listing, so a huge folder cannot make an unbounded page.
pub const MAX_LISTING_ENTRIES: usize = 10_000;

/// One name in a listed folder, as the file system described it (symlinks followed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingEntry {
    pub is_dir: bool,
    pub name: String,
    /// Bytes, shown for files only.
    pub size: u64,
}

/// The listing of the folder at `clean`. `truncated` says the reader stopped at `MAX_LISTING_ENTRIES`.
pub fn listing_page(mut entries: Vec<ListingEntry>, truncated: bool, clean: &CleanPath) -> Vec<u8> {
    entries.sort_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| a.name.cmp(&b.name)));
    let title = html_escape(&clean.url(true));
    let mut page = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title></head>\n\
         <body><h1>Index of {title}</h1>\n<ul>\n"
    );
    if !clean.segments.is_empty() {
        page.push_str("<li><a href=\"../\">../</a></li>\n");
    }
    for e in &entries {
        let slash = if e.is_dir { "/" } else { "" };
        let _ = write!(
            page,
            "<li><a href=\"{}{slash}\">{}{slash}</a>",
            percent_encode(&e.name),
            html_escape(&e.name)
        );
        if !e.is_dir {
            let _ = write!(page, " {}", e.size);
        }
        page.push_str("</li>\n");
    }
    if truncated {
        let _ = writeln!(
            page,
            "<li>(only the first {MAX_LISTING_ENTRIES} entries are shown)</li>"
        );
    }
    page.push_str("</ul></body></html>\n");
    page.into_bytes()
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::path::clean_target;

    fn entry(is_dir: bool, name: &str, size: u64) -> ListingEntry {
        ListingEntry {
            is_dir,
            name: name.to_string(),
            size,
        }
    }

    #[test]
    fn page_escapes_names_and_lists_folders_first() {
        let entries = vec![
            entry(false, "b.txt", 1),
            entry(false, "<a>&'.txt", 22),
            entry(true, "z dir", 0),
        ];
        let clean = clean_target("/x/%3Cy%3E/").unwrap();
        let page = String::from_utf8(listing_page(entries, false, &clean)).unwrap();
        assert_eq!(
            page,
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of /x/%3Cy%3E/</title></head>\n\
             <body><h1>Index of /x/%3Cy%3E/</h1>\n<ul>\n\
             <li><a href=\"../\">../</a></li>\n\
             <li><a href=\"z%20dir/\">z dir/</a></li>\n\
             <li><a href=\"%3Ca%3E%26'.txt\">&lt;a&gt;&amp;&#39;.txt</a> 22</li>\n\
             <li><a href=\"b.txt\">b.txt</a> 1</li>\n\
             </ul></body></html>\n"
        );

        let top = clean_target("/").unwrap();
        let page = String::from_utf8(listing_page(vec![entry(true, "x", 0)], true, &top)).unwrap();
        assert!(!page.contains("href=\"../\""), "{page}");
        assert!(
            page.contains("(only the first 10000 entries are shown)"),
            "{page}"
        );
    }
}
