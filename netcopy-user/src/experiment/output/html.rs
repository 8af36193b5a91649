//! `report.html`: report.md as one self-contained page, readable in a browser without a
//! server or a network: the plots inline as `data:` URIs, the style in the page.
//!
//! It is rendered from the Markdown report itself (pulldown-cmark, with tables), so the
//! two can never say different things. Everything in the Markdown is text: raw HTML in
//! it (a hostname or a kernel's error message that happens to contain `<script>`) is
//! escaped, never passed through, and an image that is not one of the run's plots is
//! shown as its description, never fetched.

use base64::Engine as _;
use pulldown_cmark::{html, CowStr, Event, Options, Parser, Tag, TagEnd};

use super::plots::Plot;

/// The HTML report in a results directory.
pub(super) const HTML_FILE: &str = "report.html";

const STYLE: &str = "\
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; \
color: #222; line-height: 1.45; }
h1, h2, h3 { line-height: 1.2; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.5em; vertical-align: top; }
th { background: #f3f3f3; }
img { display: block; max-width: 100%; height: auto; margin: 1em 0; border: 1px solid #eee; }
code { background: #f6f6f6; padding: 0 0.2em; }
";

/// The page for `markdown`, with each image whose target is one of `plots` inline.
pub(super) fn render_html(markdown: &str, plots: &[Plot]) -> String {
    let inline = |file: &str| {
        plots.iter().find(|p| p.file_name == file).map(|p| {
            format!(
                "data:image/svg+xml;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(p.svg.as_bytes())
            )
        })
    };
    // Inside an image that is not a plot: its description is kept as text.
    let mut foreign_image = 0usize;
    let events = Parser::new_ext(markdown, Options::ENABLE_TABLES).filter_map(|event| {
        Some(match event {
            Event::Html(text) | Event::InlineHtml(text) => Event::Text(text),
            Event::Start(Tag::Image {
                link_type,
                dest_url,
                title,
                id,
            }) => match inline(&dest_url) {
                Some(uri) => Event::Start(Tag::Image {
                    link_type,
                    dest_url: CowStr::from(uri),
                    title,
                    id,
                }),
                None => {
                    foreign_image += 1;
                    return None;
                }
            },
            Event::End(TagEnd::Image) if foreign_image > 0 => {
                foreign_image -= 1;
                return None;
            }
            other => other,
        })
    });
    let mut body = String::new();
    html::push_html(&mut body, events);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>netcopy report</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n{body}\
         </body>\n</html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plot(name: &'static str) -> Plot {
        Plot {
            file_name: name,
            svg: "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"4\" height=\"4\"/>".into(),
        }
    }

    #[test]
    fn plots_go_inline_and_nothing_else_is_fetched() {
        let md = "# T\n\n![Throughput](a.svg)\n\n![Elsewhere](http://example.org/x.png)\n\n\
                  | a | b |\n|---|---|\n| 1 | 2 |\n";
        let page = render_html(md, &[plot("a.svg")]);
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(
            page.contains("<img src=\"data:image/svg+xml;base64,"),
            "{page}"
        );
        assert!(page.contains("alt=\"Throughput\""));
        assert!(!page.contains("example.org"), "{page}");
        assert!(page.contains("Elsewhere"), "the description stays: {page}");
        assert!(
            page.contains("<table>") && page.contains("<td>2</td>"),
            "{page}"
        );
    }

    #[test]
    fn html_in_the_report_is_escaped() {
        let page = render_html("host <script>alert(1)</script>\n\n<b>raw</b>\n", &[]);
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;"), "{page}");
        assert!(!page.contains("<b>raw"), "{page}");
    }
}
