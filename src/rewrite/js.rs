//! JavaScript, rewritten where no in-page hook can reach: `location` is unforgeable (its methods and
//! setters cannot be wrapped), a cross-origin window's `postMessage` cannot be wrapped from this realm,
//! and `import()` is syntax. Parsed with oxc; scope analysis tells a global `location` from a local one.
//!
//! The output is the original source with small insertions, never regenerated code, so everything else
//! stays byte for byte (comments, formatting, source maps' line numbers):
//!
//! | source                  | becomes                              |
//! |-------------------------|--------------------------------------|
//! | `location` (global)     | `__cbLocation`                       |
//! | `X.location`            | `__cbLocationOf(X)`                  |
//! | `X.location = v`        | `__cbSetLocation(X, v)`              |
//! | `import(u)`             | `import(__cbUrl(u))`                 |
//! | `w.postMessage(m, o)`   | `w.postMessage(m, __cbOrigin(o))`    |
//!
//! The `__cb*` helpers are defined by the runtime (`agent/runtime.js`). A script that does not parse is
//! left as it is.

use oxc_allocator::Allocator;
use oxc_ast::ast::{
    Argument, AssignmentExpression, AssignmentOperator, AssignmentTarget, CallExpression,
    Expression, IdentifierReference, ImportExpression, ObjectProperty, PropertyKey,
    SimpleAssignmentTarget, StaticMemberExpression,
};
use oxc_ast_visit::{walk, Visit};
use oxc_semantic::{Scoping, SemanticBuilder};
use oxc_span::{GetSpan, SourceType, Span};

/// Rewrites a script; `None` when nothing needs to change or it does not parse.
pub fn rewrite(source: &str) -> Option<String> {
    if !mentions_anything(source) {
        return None;
    }
    let allocator = Allocator::default();
    let parsed = oxc_parser::Parser::new(&allocator, source, SourceType::unambiguous()).parse();
    if parsed.diagnostics.has_errors() {
        return None;
    }
    let scoping = SemanticBuilder::new()
        .build(&parsed.program)
        .semantic
        .into_scoping();
    let mut edits = Edits {
        scoping: &scoping,
        list: Vec::new(),
        assigned_members: Vec::new(),
        shorthand: Vec::new(),
    };
    edits.visit_program(&parsed.program);
    if edits.list.is_empty() {
        return None;
    }
    Some(apply(source, edits.list))
}

/// Rewrites an event-handler attribute's code, which is a function body (`return false;` is legal in
/// it): parsed inside a wrapper, which is stripped again. Edits only ever land inside the body.
pub fn rewrite_handler(body: &str, cache: &super::script::ScriptCache) -> Option<String> {
    const OPEN: &str = "(function(event){";
    const CLOSE: &str = "\n})";
    let wrapped = format!("{OPEN}{body}{CLOSE}");
    let out = cache.rewrite(&wrapped)?;
    let inner = out.strip_prefix(OPEN)?.strip_suffix(CLOSE)?;
    Some(inner.to_owned())
}

/// Scripts that name none of the rewritten things need no parse at all (most of them).
pub fn mentions_anything(source: &str) -> bool {
    mentions_anything_in(source.as_bytes())
}

/// The words a script must contain for the rewriter to change anything in it.
pub const WORDS: [&str; 3] = ["location", "import", "postMessage"];

/// [`mentions_anything`] over bytes as written (the words are ASCII, so any ASCII-compatible encoding).
/// The searchers are built once: building one costs more than searching a short attribute.
pub fn mentions_anything_in(bytes: &[u8]) -> bool {
    static FINDERS: std::sync::LazyLock<[memchr::memmem::Finder<'static>; 3]> =
        std::sync::LazyLock::new(|| WORDS.map(memchr::memmem::Finder::new));
    FINDERS.iter().any(|f| f.find(bytes).is_some())
}

/// One insertion or replacement: bytes `start..end` of the source become `text`.
struct Edit {
    start: u32,
    end: u32,
    text: String,
}

struct Edits<'s> {
    scoping: &'s Scoping,
    list: Vec<Edit>,
    /// Spans of `X.location` members in target positions: a plain `=` is rewritten by the assignment;
    /// others (`+=`, `++`, destructuring, `for … in`) must stay references, so they are left as they are.
    assigned_members: Vec<Span>,
    /// Spans of shorthand `{ location }` values, which need their key kept.
    shorthand: Vec<Span>,
}

impl Edits<'_> {
    fn insert(&mut self, at: u32, text: &str) {
        self.replace(at, at, text);
    }

    fn replace(&mut self, start: u32, end: u32, text: &str) {
        self.list.push(Edit {
            start,
            end,
            text: text.to_owned(),
        });
    }

    fn is_global(&self, ident: &IdentifierReference) -> bool {
        match ident.reference_id.get() {
            Some(id) => self.scoping.get_reference(id).symbol_id().is_none(),
            None => false,
        }
    }

    /// Wraps an expression's span in a call: `f(` … `)`.
    fn wrap(&mut self, span: Span, function: &str) {
        self.insert(span.start, &format!("{function}("));
        self.insert(span.end, ")");
    }
}

impl<'a> Visit<'a> for Edits<'_> {
    fn visit_identifier_reference(&mut self, it: &IdentifierReference<'a>) {
        if it.name == "location" && self.is_global(it) {
            let text = if self.shorthand.contains(&it.span) {
                "location: __cbLocation"
            } else {
                "__cbLocation"
            };
            self.replace(it.span.start, it.span.end, text);
        }
    }

    fn visit_object_property(&mut self, it: &ObjectProperty<'a>) {
        if it.shorthand {
            if let PropertyKey::StaticIdentifier(key) = &it.key {
                if key.name == "location" {
                    self.shorthand.push(it.value.span());
                }
            }
        }
        walk::walk_object_property(self, it);
    }

    fn visit_static_member_expression(&mut self, it: &StaticMemberExpression<'a>) {
        walk::walk_static_member_expression(self, it);
        if it.property.name == "location" && !self.assigned_members.contains(&it.span) {
            // `X.location` → `__cbLocationOf(X)`: open before X, close in place of `.location`.
            self.insert(it.object.span().start, "__cbLocationOf(");
            self.replace(it.object.span().end, it.span.end, ")");
        }
    }

    fn visit_assignment_expression(&mut self, it: &AssignmentExpression<'a>) {
        if let (AssignmentOperator::Assign, AssignmentTarget::StaticMemberExpression(member)) =
            (it.operator, &it.left)
        {
            if member.property.name == "location" {
                // `X.location = v` → `__cbSetLocation(X, v)`.
                self.assigned_members.push(member.span);
                self.insert(member.object.span().start, "__cbSetLocation(");
                self.replace(member.object.span().end, it.right.span().start, ", ");
                self.insert(it.right.span().end, ")");
            }
        }
        walk::walk_assignment_expression(self, it);
    }

    fn visit_simple_assignment_target(&mut self, it: &SimpleAssignmentTarget<'a>) {
        if let SimpleAssignmentTarget::StaticMemberExpression(member) = it {
            if member.property.name == "location" {
                self.assigned_members.push(member.span);
            }
        }
        walk::walk_simple_assignment_target(self, it);
    }

    fn visit_import_expression(&mut self, it: &ImportExpression<'a>) {
        self.wrap(it.source.span(), "__cbUrl");
        walk::walk_import_expression(self, it);
    }

    fn visit_call_expression(&mut self, it: &CallExpression<'a>) {
        if let Expression::StaticMemberExpression(callee) = &it.callee {
            if callee.property.name == "postMessage" {
                if let Some(origin) = it
                    .arguments
                    .get(1)
                    .filter(|a| !matches!(a, Argument::SpreadElement(_)))
                {
                    self.wrap(origin.span(), "__cbOrigin");
                }
            }
        }
        walk::walk_call_expression(self, it);
    }
}

/// Applies edits in source order. Insertions at one offset keep the order they were made in, which is
/// outer-before-inner for openings (made before walking children) and inner-before-outer for closings.
fn apply(source: &str, mut edits: Vec<Edit>) -> String {
    edits.sort_by_key(|e| e.start);
    let mut out = String::with_capacity(source.len() + edits.len() * 16);
    let mut at = 0usize;
    for edit in edits {
        let (start, end) = (edit.start as usize, edit.end as usize);
        if start < at {
            continue; // overlapping edits cannot happen with the shapes above; never corrupt the source
        }
        out.push_str(&source[at..start]);
        out.push_str(&edit.text);
        at = end;
    }
    out.push_str(&source[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parses(source: &str) -> bool {
        let allocator = Allocator::default();
        let parsed = oxc_parser::Parser::new(&allocator, source, SourceType::script()).parse();
        !parsed.diagnostics.has_errors()
    }

    fn js(source: &str) -> String {
        rewrite(source).unwrap_or_else(|| source.to_owned())
    }

    #[test]
    fn global_location_reads_and_writes() {
        assert_eq!(
            js("var h = location.hostname;"),
            "var h = __cbLocation.hostname;"
        );
        assert_eq!(js("location = '/x'"), "__cbLocation = '/x'");
        assert_eq!(
            js("location.href = u; location.assign(u)"),
            "__cbLocation.href = u; __cbLocation.assign(u)"
        );
        assert_eq!(js("f({ location })"), "f({ location: __cbLocation })");
    }

    #[test]
    fn local_location_is_left_alone() {
        let s = "function f(location) { return location.href } let g = () => { const location = 1; return location }";
        assert_eq!(js(s), s);
        assert_eq!(
            js("var o = { location: 1 }; o.loc = 2"),
            "var o = { location: 1 }; o.loc = 2"
        );
    }

    #[test]
    fn member_location() {
        assert_eq!(
            js("var a = window.location.href"),
            "var a = __cbLocationOf(window).href"
        );
        assert_eq!(
            js("top.location = 'https://x.test/'"),
            "__cbSetLocation(top, 'https://x.test/')"
        );
        assert_eq!(
            js("document.location.replace(u)"),
            "__cbLocationOf(document).replace(u)"
        );
        assert_eq!(
            js("a.b.location = c.location"),
            "__cbSetLocation(a.b, __cbLocationOf(c))"
        );
        assert_eq!(js("w.location.href = 'x'"), "__cbLocationOf(w).href = 'x'");
    }

    #[test]
    fn member_targets_other_than_plain_assignment_stay_valid() {
        for source in [
            "a.location += 'x'",
            "a.location++",
            "--b.c.location",
            "[a.location] = arr",
            "({ x: a.location } = o)",
            "for (a.location in o) {}",
            "for (a.location of o) {}",
        ] {
            let out = js(source);
            assert!(parses(&out), "{source} became {out}");
        }
    }

    #[test]
    fn dynamic_import_and_post_message() {
        assert_eq!(
            js("import('https://cdn.test/m.mjs')"),
            "import(__cbUrl('https://cdn.test/m.mjs'))"
        );
        assert_eq!(
            js("parent.postMessage(msg, 'https://a.test')"),
            "parent.postMessage(msg, __cbOrigin('https://a.test'))"
        );
        assert_eq!(js("w.postMessage(m)"), "w.postMessage(m)");
        assert_eq!(js("w.postMessage(m, ...rest)"), "w.postMessage(m, ...rest)");
    }

    #[test]
    fn modules_and_unparseable_scripts() {
        assert_eq!(
            js("import x from './x.js'; export const h = location.host;"),
            "import x from './x.js'; export const h = __cbLocation.host;"
        );
        assert_eq!(
            rewrite("location.href = ("),
            None,
            "syntax errors leave the script alone"
        );
        assert_eq!(rewrite("var a = 1;"), None, "nothing to do, no parse");
    }

    #[test]
    fn event_handler_bodies() {
        let cache = crate::rewrite::script::ScriptCache::new(1 << 20);
        assert_eq!(
            rewrite_handler("location.href='https://x.test/'; return false;", &cache).as_deref(),
            Some("__cbLocation.href='https://x.test/'; return false;")
        );
        assert_eq!(rewrite_handler("go(event)", &cache), None);
        // A body that closes the wrapper is a syntax error as a handler in the browser; rewritten, it is
        // still one (the wrapper it would need is not there), so it can never run.
        let escaped = rewrite_handler("})(); location.x; (function(){", &cache).unwrap();
        assert!(!parses(&format!("function h(event) {{{escaped}}}")));
        assert!(parses(
            "function h(event) {__cbLocation.href='x'; return false;}"
        ));
    }

    #[test]
    fn nested_edits_stay_balanced() {
        assert_eq!(
            js("top.location = location.href + import('x')"),
            "__cbSetLocation(top, __cbLocation.href + import(__cbUrl('x')))"
        );
        assert_eq!(
            js("window.parent.location.href = w.postMessage(location, o)"),
            "__cbLocationOf(window.parent).href = w.postMessage(__cbLocation, __cbOrigin(o))"
        );
    }
}
