use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The proxy origin of `https://cdn.shop.test`.
const CDN: &str = "http://cdn.shop.test.k3x9q2m7wa-s.localhost:8080";
const BIG_CARRY: usize = 1 << 20;

use crate::url_codec::test_map as map;

fn base() -> Url {
    Url::parse("https://www.shop.test/css/site.css").unwrap()
}

/// Streams `input` in chunks of the given sizes (the last chunk takes whatever is left).
fn stream(input: &[u8], sizes: impl IntoIterator<Item = usize>) -> Vec<u8> {
    let mut rewriter = CssRewriter::new(map(), base(), BIG_CARRY);
    let mut out = Vec::new();
    let mut rest = input;
    for size in sizes {
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        rewriter.write(chunk, &mut out).unwrap();
        rest = tail;
    }
    rewriter.write(rest, &mut out).unwrap();
    rewriter.end(&mut out).unwrap();
    out
}

fn random_sizes(seed: u64, len: usize) -> Vec<usize> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sizes = Vec::new();
    let mut total = 0;
    while total < len {
        let size = rng.gen_range(1..=7);
        sizes.push(size);
        total += size;
    }
    sizes
}

/// Whole input, every two-chunk split and random small chunkings must all give `expected`.
fn check_stream(input: &[u8], expected: &[u8]) {
    let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let whole = stream(input, []);
    assert_eq!(show(&whole), show(expected), "whole input");
    for split in 0..=input.len() {
        let out = stream(input, [split]);
        assert_eq!(show(&out), show(expected), "split at byte {split}");
    }
    for seed in 0..8 {
        let out = stream(input, random_sizes(seed, input.len()));
        assert_eq!(show(&out), show(expected), "random chunks, seed {seed}");
    }
}

/// Streaming and whole-string forms must agree; unchanged input must come back borrowed.
fn check(input: &str, expected: &str) {
    check_stream(input.as_bytes(), expected.as_bytes());
    let whole = rewrite_css_str(&map(), &base(), input);
    assert_eq!(whole, expected);
    assert_eq!(matches!(whole, Cow::Borrowed(_)), input == expected);
}

fn unchanged(input: &str) {
    check(input, input);
}

#[test]
fn absolute_urls_quoted_unquoted_and_uppercase() {
    check(
        "a{background:url(https://cdn.shop.test/a.png)}\n\
         b{background:url('https://cdn.shop.test/b.png') no-repeat}\n\
         c{background:URL(https://cdn.shop.test/c.png)}\n\
         d{background:URL( \"https://cdn.shop.test/d.png\" )}\n\
         e{background:url(   https://cdn.shop.test/e.png   )}",
        &format!(
            "a{{background:url(\"{CDN}/a.png\")}}\n\
             b{{background:url(\"{CDN}/b.png\") no-repeat}}\n\
             c{{background:url(\"{CDN}/c.png\")}}\n\
             d{{background:URL( \"{CDN}/d.png\" )}}\n\
             e{{background:url(\"{CDN}/e.png\")}}"
        ),
    );
}

#[test]
fn protocol_relative_urls() {
    check(
        "a{background:url(//cdn.shop.test/a.png)} b{background:url(\"//cdn.shop.test/b.png\")}",
        &format!("a{{background:url(\"{CDN}/a.png\")}} b{{background:url(\"{CDN}/b.png\")}}"),
    );
}

#[test]
fn relative_and_root_relative_urls_are_byte_identical() {
    unchanged(
        "a{background:url(a.png)}\nb{background:url( '/img/b.png' )}\n\
         c{background:url(\"../c.png\")}\nd{mask:url(#m)}\ne{background:url()}\n",
    );
}

#[test]
fn data_urls_and_proxied_urls_are_untouched() {
    unchanged(
        "a{background:url(data:image/png;base64,iVBORw0KGgo=)}\n\
         b{background:url(\"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E\")}\n\
         c{background:url(http://cdn.shop.test.k3x9q2m7wa-s.localhost:8080/c.png)}",
    );
}

#[test]
fn import_string_and_url_forms() {
    check(
        "@import \"https://cdn.shop.test/a.css\";\n\
         @import 'https://cdn.shop.test/b.css' screen;\n\
         @import url(https://cdn.shop.test/c.css);\n\
         @import url(\"https://cdn.shop.test/d.css\") layer(x) supports(display:grid);\n\
         @IMPORT/* why */ \"//cdn.shop.test/e.css\";\n\
         @import \"rel.css\";\n",
        &format!(
            "@import \"{CDN}/a.css\";\n\
             @import \"{CDN}/b.css\" screen;\n\
             @import url(\"{CDN}/c.css\");\n\
             @import url(\"{CDN}/d.css\") layer(x) supports(display:grid);\n\
             @IMPORT/* why */ \"{CDN}/e.css\";\n\
             @import \"rel.css\";\n"
        ),
    );
}

#[test]
fn only_the_string_right_after_import_is_a_url() {
    unchanged(
        "@import \"a.css\" \"https://cdn.shop.test/not-a-url\";\n@media \"https://x.test\" {}",
    );
}

#[test]
fn image_set_strings_and_urls() {
    check(
        "a{background-image:image-set(\"https://cdn.shop.test/a.png\" 1x, \
         url(https://cdn.shop.test/b.png) 2x, 'rel.png' 3x, \
         'https://cdn.shop.test/c.avif' type(\"image/avif\"))}\n\
         b{background-image:-webkit-image-set(url('//cdn.shop.test/d.png') 1x, \"//cdn.shop.test/e.png\" 2x)}\n\
         c{background-image:IMAGE-SET(\"https://cdn.shop.test/f.png\" 1x)}",
        &format!(
            "a{{background-image:image-set(\"{CDN}/a.png\" 1x, \
             url(\"{CDN}/b.png\") 2x, 'rel.png' 3x, \
             \"{CDN}/c.avif\" type(\"image/avif\"))}}\n\
             b{{background-image:-webkit-image-set(url(\"{CDN}/d.png\") 1x, \"{CDN}/e.png\" 2x)}}\n\
             c{{background-image:IMAGE-SET(\"{CDN}/f.png\" 1x)}}"
        ),
    );
}

#[test]
fn strings_nested_deeper_in_image_set_are_not_urls() {
    unchanged("a{b:image-set(\"a.png\" type(\"https://cdn.shop.test/x\") 1x, (\"https://cdn.shop.test/y\"))}");
}

#[test]
fn src_function() {
    check(
        "a{background:src(\"https://cdn.shop.test/a.png\") src( 'b.png' )}",
        &format!("a{{background:src(\"{CDN}/a.png\") src( 'b.png' )}}"),
    );
}

#[test]
fn font_face_sources() {
    check(
        "@font-face {\n  font-family: \"Shop Sans\";\n  \
         src: url(https://cdn.shop.test/f.woff2) format(\"woff2\"),\n       \
         url('//cdn.shop.test/f.woff') format('woff'),\n       \
         local(\"https://cdn.shop.test/local-name\"),\n       url(f.ttf) format(\"truetype\");\n}\n",
        &format!(
            "@font-face {{\n  font-family: \"Shop Sans\";\n  \
             src: url(\"{CDN}/f.woff2\") format(\"woff2\"),\n       \
             url(\"{CDN}/f.woff\") format('woff'),\n       \
             local(\"https://cdn.shop.test/local-name\"),\n       url(f.ttf) format(\"truetype\");\n}}\n"
        ),
    );
}

#[test]
fn urls_in_nested_blocks() {
    check(
        "@media screen and (min-width: 10px) {\n @supports (display: grid) {\n  \
         .a { background: url(https://cdn.shop.test/m.png) }\n }\n}\n\
         @layer base { .b { & .c { --x: [url(\"https://cdn.shop.test/n.png\")]; } } }\n\
         .d { background: linear-gradient(red, blue), calc(1px + 2px), url(//cdn.shop.test/o.png) }",
        &format!(
            "@media screen and (min-width: 10px) {{\n @supports (display: grid) {{\n  \
             .a {{ background: url(\"{CDN}/m.png\") }}\n }}\n}}\n\
             @layer base {{ .b {{ & .c {{ --x: [url(\"{CDN}/n.png\")]; }} }} }}\n\
             .d {{ background: linear-gradient(red, blue), calc(1px + 2px), url(\"{CDN}/o.png\") }}"
        ),
    );
}

#[test]
fn escapes_cannot_smuggle_a_url() {
    check(
        "a{background:url(https\\:\\/\\/cdn.shop.test/a)}\n\
         b{background:url(\"https:\\2f\\2f cdn.shop.test/b\")}\n\
         c{background:\\75rl(https://cdn.shop.test/c)}\n\
         d{background:u\\72l('https://cdn.shop.test/d')}\n\
         @\\69mport 'https://cdn.shop.test/e.css';",
        &format!(
            "a{{background:url(\"{CDN}/a\")}}\n\
             b{{background:url(\"{CDN}/b\")}}\n\
             c{{background:url(\"{CDN}/c\")}}\n\
             d{{background:u\\72l(\"{CDN}/d\")}}\n\
             @\\69mport \"{CDN}/e.css\";"
        ),
    );
}

#[test]
fn comments_are_not_rewritten() {
    unchanged(
        "/* url(https://cdn.shop.test/a.png) @import \"https://cdn.shop.test/x.css\"; */\n\
         a{/*url(\"https://cdn.shop.test/b.png\")*/color:red}\n\
         b{background:/* image-set(\"https://cdn.shop.test/c.png\" 1x) */none}",
    );
}

#[test]
fn strings_that_are_not_urls() {
    unchanged(
        "a::before{content:\"https://cdn.shop.test/x\"}\n\
         a[href^='https://cdn.shop.test']{color:red}\n\
         b{font-family:\"http://font.test\", serif}\n",
    );
}

#[test]
fn namespace_urls_are_names_not_references() {
    check(
        "@namespace svg url(http://www.w3.org/2000/svg);\n\
         @namespace url(\"http://www.w3.org/1999/xhtml\");\n\
         @namespace m \"http://www.w3.org/1998/Math/MathML\";\n\
         svg|a{background:url(https://cdn.shop.test/a.png)}",
        &format!(
            "@namespace svg url(http://www.w3.org/2000/svg);\n\
             @namespace url(\"http://www.w3.org/1999/xhtml\");\n\
             @namespace m \"http://www.w3.org/1998/Math/MathML\";\n\
             svg|a{{background:url(\"{CDN}/a.png\")}}"
        ),
    );
}

#[test]
fn bad_url_and_bad_string_tokens_are_left_alone() {
    unchanged(
        "a{background:url(https://cdn.shop.test/a b)}\n\
         b{background:url(https://cdn.shop.test/b\"c)}\n\
         c{background:url(https://cdn.shop.test/c(d))}\n\
         d{background:url(\"https://cdn.shop.test/d\ne\")}\n",
    );
}

#[test]
fn unterminated_constructs_at_end_of_input() {
    check(
        "a{background:url(https://cdn.shop.test/a",
        &format!("a{{background:url(\"{CDN}/a\")"),
    );
    check(
        "@import 'https://cdn.shop.test/b.css",
        &format!("@import \"{CDN}/b.css\""),
    );
    unchanged("a{background:url(");
    unchanged("@import ");
    unchanged("a{b:image-set(");
}

#[test]
fn lookahead_sensitive_boundaries() {
    // `<!--` and `-->` are single tokens only when seen whole; a split inside them must not turn the
    // following `url(` into part of a `--url(` function.
    check(
        "<!--url(https://cdn.shop.test/a)-->url(https://cdn.shop.test/b)\n\
         a{margin:1.5e+3px -.5em;b:-\\75rl(x) #-url(https://cdn.shop.test/c)}",
        &format!(
            "<!--url(\"{CDN}/a\")-->url(\"{CDN}/b\")\n\
             a{{margin:1.5e+3px -.5em;b:-\\75rl(x) #-url(https://cdn.shop.test/c)}}"
        ),
    );
}

#[test]
fn mismatched_closers_do_not_end_blocks() {
    check(
        "a{b:image-set(\"https://cdn.shop.test/a\" } ] \"https://cdn.shop.test/b\") \"https://x.test\"}",
        &format!("a{{b:image-set(\"{CDN}/a\" }} ] \"{CDN}/b\") \"https://x.test\"}}"),
    );
}

#[test]
fn utf8_text_and_urls() {
    check(
        "/* 日本語 — ünïcödé */ .ü{content:\"→\";background:url(https://cdn.shop.test/日本.png)}",
        &format!(
            "/* 日本語 — ünïcödé */ .ü{{content:\"→\";background:url(\"{CDN}/%E6%97%A5%E6%9C%AC.png\")}}"
        ),
    );
}

#[test]
fn non_utf8_stylesheets_keep_their_bytes() {
    let input = b"/* caf\xe9 \xff\xfe */ .\xe9{content:\"\xe9\"} a{background:url(https://cdn.shop.test/a.png)}";
    let mut expected =
        b"/* caf\xe9 \xff\xfe */ .\xe9{content:\"\xe9\"} a{background:url(\"".to_vec();
    expected.extend_from_slice(CDN.as_bytes());
    expected.extend_from_slice(b"/a.png\")}");
    check_stream(input, &expected);
}

#[test]
fn non_utf8_bytes_inside_a_url() {
    // A Latin-1 `é` is read as U+00E9; a UTF-8 one in the same (hence non-UTF-8) sheet stays UTF-8.
    let input: &[u8] =
        b"x{a:url(https://cdn.shop.test/caf\xe9.png) b:url('https://cdn.shop.test/\xc3\xa9t\xc3\xa9')}/*\xff*/";
    let expected = [
        &b"x{a:url(\""[..],
        CDN.as_bytes(),
        b"/caf%C3%A9.png\") b:url(\"",
        CDN.as_bytes(),
        b"/%C3%A9t%C3%A9\")}/*\xff*/",
    ]
    .concat();
    check_stream(input, &expected);
}

#[test]
fn style_attribute_values() {
    let css = "background: url('https://cdn.shop.test/a.png') no-repeat; color: red";
    assert_eq!(
        rewrite_css_str(&map(), &base(), css),
        format!("background: url(\"{CDN}/a.png\") no-repeat; color: red")
    );
    let plain = "color: red; background: url(/a.png)";
    assert!(matches!(
        rewrite_css_str(&map(), &base(), plain),
        Cow::Borrowed(_)
    ));
    assert!(matches!(
        rewrite_css_str(&map(), &base(), ""),
        Cow::Borrowed(_)
    ));
}

#[test]
fn empty_and_tiny_inputs() {
    unchanged("");
    unchanged("a");
    unchanged("}");
    unchanged("url");
    check(
        "url(//a.test)",
        "url(\"http://a.test.k3x9q2m7wa-s.localhost:8080/\")",
    );
}

#[test]
fn deep_nesting_does_not_overflow_the_stack() {
    let depth = 200_000;
    let input = format!(
        "{}url(https://cdn.shop.test/deep){}",
        "(".repeat(depth),
        ")".repeat(depth)
    );
    let expected = format!(
        "{}url(\"{CDN}/deep\"){}",
        "(".repeat(depth),
        ")".repeat(depth)
    );
    assert_eq!(rewrite_css_str(&map(), &base(), &input), expected);
    for seed in 0..2 {
        let sizes = random_sizes(seed, input.len() / 1000)
            .into_iter()
            .map(|s| s * 1000);
        assert_eq!(stream(input.as_bytes(), sizes), expected.as_bytes());
    }
}

#[test]
fn carry_is_bounded_by_an_unterminated_comment() {
    let mut rewriter = CssRewriter::new(map(), base(), 1024);
    let mut out = Vec::new();
    let mut fed = b"a{color:red}/* ".to_vec();
    rewriter.write(b"a{color:red}/* ", &mut out).unwrap();
    let filler = [b'x'; 100];
    let error = loop {
        match rewriter.write(&filler, &mut out) {
            Ok(()) => fed.extend_from_slice(&filler),
            Err(error) => break error,
        }
        assert!(fed.len() < 4096, "no error after {} bytes", fed.len());
    };
    fed.extend_from_slice(&filler);
    assert!(matches!(error, CssError::CarryTooLarge { limit: 1024 }));
    assert_eq!(out, fed, "every byte so far is out, unchanged");
    // The rest passes through unchanged, even what would otherwise be rewritten.
    let rest = b"*/ a{background:url(https://cdn.shop.test/a)}";
    rewriter.write(rest, &mut out).unwrap();
    rewriter.end(&mut out).unwrap();
    fed.extend_from_slice(rest);
    assert_eq!(out, fed);
}

#[test]
fn carry_is_bounded_by_a_huge_data_url() {
    for prefix in [
        &b"a{background:url(\"data:image/png;base64,"[..],
        b"a{background:url(data:,",
    ] {
        let mut rewriter = CssRewriter::new(map(), base(), 4096);
        let mut out = Vec::new();
        rewriter.write(prefix, &mut out).unwrap();
        let mut result = Ok(());
        for _ in 0..100 {
            result = rewriter.write(&[b'A'; 512], &mut out);
            if result.is_err() {
                break;
            }
        }
        assert!(matches!(
            result,
            Err(CssError::CarryTooLarge { limit: 4096 })
        ));
        assert!(out.len() <= prefix.len() + 100 * 512);
    }
}

#[test]
fn long_tokens_split_anywhere() {
    let data = "QUJD/+=".repeat(60);
    let input = format!(
        "/* a/b *{data}/ ** */a{{b:url(data:,{data}) url(\"data:,{data}\\\"\") url(x\\)y) \
         url('https://cdn.shop.test/{data}')}}/*/ */\"\\\"{data}\"url(https://cdn.shop.test/z)"
    );
    let expected = format!(
        "/* a/b *{data}/ ** */a{{b:url(data:,{data}) url(\"data:,{data}\\\"\") url(x\\)y) \
         url(\"{CDN}/{data}\")}}/*/ */\"\\\"{data}\"url(\"{CDN}/z\")"
    );
    check(&input, &expected);
}

#[test]
fn blank_url_opening_does_not_stall_the_stream() {
    // `url(` and blanks may still become a function whose string settles it; the carry must stay small.
    let opening = b"a{b:url(   ";
    let mut rest = b"\"https://cdn.shop.test/x\"".to_vec();
    rest.extend_from_slice(" y".repeat(1000).as_bytes());
    rest.extend_from_slice(b")}");
    let mut rewriter = CssRewriter::new(map(), base(), 256);
    let mut out = Vec::new();
    rewriter.write(opening, &mut out).unwrap();
    for chunk in rest.chunks(7) {
        rewriter.write(chunk, &mut out).unwrap();
    }
    rewriter.end(&mut out).unwrap();
    let input = [&opening[..], &rest].concat();
    let expected = String::from_utf8(input)
        .unwrap()
        .replace("https://cdn.shop.test", CDN);
    assert_eq!(String::from_utf8(out).unwrap(), expected);
}

#[test]
fn stalls_only_on_truly_unterminated_tokens() {
    let cases: &[(&str, bool)] = &[
        ("/* abc", true),
        ("/*/", true),
        ("/* abc */", false),
        ("/**/", false),
        ("\"", true),
        ("\"abc", true),
        ("'a\"", true),
        ("\"abc\\\"", true),
        ("\"abc\"", false),
        ("\"abc\\\\\"", false),
        ("url(abc", true),
        ("url(a\\)", true),
        ("url(a b", true),
        ("url(a\"b", true),
        ("url(abc)", false),
        ("url(   ", false),
        ("abc", false),
    ];
    for &(text, stalled) in cases {
        let mut input = ParserInput::new(text);
        let mut parser = Parser::new(&mut input);
        let mut last = None;
        while let Ok(token) = parser.next_including_whitespace_and_comments() {
            last = Some(token.clone());
        }
        let stall = Stall::of(&last.unwrap(), text.as_bytes());
        assert_eq!(stall.is_some(), stalled, "{text}");
    }
}

#[test]
fn large_stylesheet_in_realistic_chunks() {
    let rule = ".a{background:url(/x.png) no-repeat;color:#fff}/* c */\n\
                .b{background:url(https://cdn.shop.test/y.png)}\n";
    let input = rule.repeat(2000);
    let expected = rewrite_css_str(&map(), &base(), &input).into_owned();
    assert!(expected.contains(&format!("url(\"{CDN}/y.png\")")));
    for size in [1, 13, 4096, 16 * 1024] {
        let out = stream(
            input.as_bytes(),
            std::iter::repeat_n(size, input.len() / size + 1),
        );
        assert_eq!(out, expected.as_bytes(), "chunks of {size}");
    }
}

#[test]
fn random_token_soup_streams_like_the_whole() {
    const PIECES: &[&[u8]] = &[
        b"url(",
        b"URL(",
        b"src(",
        b"image-set(",
        b"-webkit-image-set(",
        b"@import",
        b"@namespace",
        b"https://cdn.shop.test/a",
        b"//cdn.shop.test/b",
        b"rel.png",
        b"data:,x",
        b"\"",
        b"'",
        b"(",
        b")",
        b"{",
        b"}",
        b"[",
        b"]",
        b"/*",
        b"*/",
        b"\\",
        b"\\75",
        b"<!--",
        b"-->",
        b"<!-",
        b"-",
        b".",
        b"+",
        b"1.5e+3",
        b"#",
        b"@",
        b";",
        b",",
        b":",
        b" ",
        b"\n",
        b"\r\n",
        b"\t",
        b"\xc3\xa9",
        b"\xe9",
        b"\xe6\x97\xa5",
        b"a",
        b"x",
        b"format(",
        b"type(",
        // Whole constructs, so that the soup is not all swallowed by stray comments and strings.
        b"url(https://cdn.shop.test/c)",
        b"url( 'https://cdn.shop.test/d' )",
        b"src(\"//cdn.shop.test/e\")",
        b"image-set(\"https://cdn.shop.test/f\" 1x)",
        b"@import \"//cdn.shop.test/g\";",
        b"*/ */ */",
        b"\"\n",
        b"')\n",
        b"url(https://cdn.shop.test/c)",
        b"url(\"//cdn.shop.test/h\")",
    ];
    let mut rewritten = 0;
    for seed in 0..40 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut input = Vec::new();
        while input.len() < 160 {
            input.extend_from_slice(PIECES[rng.gen_range(0..PIECES.len())]);
        }
        let whole = stream(&input, []);
        if let Ok(text) = std::str::from_utf8(&input) {
            assert_eq!(
                rewrite_css_str(&map(), &base(), text).as_bytes(),
                &whole[..]
            );
        }
        rewritten += usize::from(whole != input);
        check_stream(&input, &whole);
    }
    assert!(
        rewritten > 10,
        "the soup must exercise rewriting, got {rewritten}"
    );
}
