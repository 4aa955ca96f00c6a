//! Lightweight formatting in messages (bold, italic, strikethrough, code,
//! code blocks, quotes, lists, links), parsed with pulldown-cmark into a
//! small tree the web page builds from elements and text nodes: never
//! HTML, so nothing a sender writes can run, and nothing is loaded from
//! elsewhere (an image becomes its description as text).

use pulldown_cmark::{Event, Options, Parser, Tag};
use serde_json::{json, Value};

/// Most nesting kept (deeper levels become plain text): a hostile message
/// of ten thousand `>` cannot make a tree the page chokes on.
const MAX_DEPTH: usize = 16;

/// The formatted tree of `text`, or `None` when it has no formatting (the
/// page then shows the text as written, with its links).
///
/// Nodes: a string is text; `{"k": "p"|"b"|"i"|"s"|"quote"|"ul"|"ol"|"li",
/// "c": [nodes]}` holds others; `{"k": "a", "href", "c"}` is an http(s)
/// link; `{"k": "code"|"pre", "t"}` is code; `{"k": "br"}` a line break.
pub fn formatted(text: &str) -> Option<Value> {
    if !text.contains(['*', '_', '~', '`', '>', '[', '#', '-', '+']) && !text.contains(". ") {
        return None;
    }
    let mut stack: Vec<(String, Vec<Value>, Option<String>)> = vec![("root".into(), Vec::new(), None)];
    let mut plain = true;
    let push = |stack: &mut Vec<(String, Vec<Value>, Option<String>)>, v: Value| {
        if let Some(top) = stack.last_mut() {
            top.1.push(v);
        }
    };
    for event in Parser::new_ext(text, Options::ENABLE_STRIKETHROUGH) {
        match event {
            Event::Start(tag) => {
                let (kind, href) = match tag {
                    Tag::Paragraph => ("p", None),
                    Tag::Heading { .. } | Tag::Strong => ("b", None),
                    Tag::Emphasis => ("i", None),
                    Tag::Strikethrough => ("s", None),
                    Tag::BlockQuote(_) => ("quote", None),
                    Tag::List(Some(_)) => ("ol", None),
                    Tag::List(None) => ("ul", None),
                    Tag::Item => ("li", None),
                    Tag::CodeBlock(_) => ("pre", None),
                    Tag::Link { dest_url, .. }
                        if dest_url.starts_with("https://") || dest_url.starts_with("http://") =>
                    {
                        ("a", Some(dest_url.to_string()))
                    }
                    // Other links, images (their description only) and
                    // anything else: their text, nothing more.
                    _ => ("span", None),
                };
                if !matches!(kind, "p" | "span") {
                    plain = false;
                }
                stack.push((kind.into(), Vec::new(), href));
            }
            Event::End(_) => {
                if stack.len() < 2 {
                    continue;
                }
                let (kind, children, href) = stack.pop().unwrap_or_default();
                let node = match kind.as_str() {
                    "pre" => json!({"k": "pre", "t": children.iter().filter_map(Value::as_str).collect::<String>()}),
                    // Too deep, or nothing to mark: the children alone.
                    _ if stack.len() > MAX_DEPTH || kind == "span" => {
                        for c in children {
                            push(&mut stack, c);
                        }
                        continue;
                    }
                    "a" => json!({"k": "a", "href": href, "c": children}),
                    _ => json!({"k": kind, "c": children}),
                };
                push(&mut stack, node);
            }
            Event::Text(t) => push(&mut stack, Value::String(t.into_string())),
            Event::Code(t) => {
                plain = false;
                push(&mut stack, json!({"k": "code", "t": t.into_string()}));
            }
            // Written HTML is shown as the text it is.
            Event::Html(t) | Event::InlineHtml(t) => push(&mut stack, Value::String(t.into_string())),
            Event::SoftBreak | Event::HardBreak => push(&mut stack, json!({"k": "br"})),
            Event::Rule => push(&mut stack, Value::String("———".into())),
            _ => {}
        }
    }
    if plain {
        return None;
    }
    let (_, children, _) = stack.into_iter().next()?;
    Some(Value::Array(children))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_becomes_a_tree_and_html_stays_text() {
        assert_eq!(formatted("just words, nothing else"), None);
        assert_eq!(formatted("a plain sentence. Another one"), None);
        let v = formatted("**bold** and *it* and `x<y`").unwrap();
        assert_eq!(v[0]["k"], "p");
        assert_eq!(v[0]["c"][0], json!({"k": "b", "c": ["bold"]}));
        assert_eq!(v[0]["c"][2], json!({"k": "i", "c": ["it"]}));
        assert_eq!(v[0]["c"][4], json!({"k": "code", "t": "x<y"}));
        let v = formatted("> quoted\n\n```\nfn main() {}\n```").unwrap();
        assert_eq!(v[0]["k"], "quote");
        assert_eq!(v[1], json!({"k": "pre", "t": "fn main() {}\n"}));
        let v =
            formatted("*x* <script>alert(1)</script> [y](javascript:alert(1)) ![z](https://t.example/p.png)").unwrap();
        let all = v.to_string();
        assert!(all.contains("<script>"), "html as text: {all}");
        assert!(!all.contains("javascript:") && !all.contains("t.example"), "no such link, no image: {all}");
        let v = formatted("[site](https://example.org) ~~old~~").unwrap();
        assert_eq!(v[0]["c"][0], json!({"k": "a", "href": "https://example.org", "c": ["site"]}));
        assert_eq!(v[0]["c"][2], json!({"k": "s", "c": ["old"]}));
        let deep = format!("{}deep", "> ".repeat(5000));
        assert!(formatted(&deep).is_some(), "deep nesting is flattened, not refused");
    }
}
