use super::*;
use proptest::prelude::*;
use DetectorKind::*;

fn run(text: &str, detectors: Detectors) -> (String, Hits) {
    let mut hits = Hits::default();
    let out = redact(text, &detectors, &mut hits).into_owned();
    (out, hits)
}

/// (input, expected output) with every detector on.
fn check_table(table: &[(&str, &str)]) {
    for (input, want) in table {
        let (got, _) = run(input, Detectors::all());
        assert_eq!(&got, want, "input: {input:?}");
    }
}

#[test]
fn email_table() {
    check_table(&[
        ("ann@example.com", "[redacted:email]"),
        ("mail ann@example.com.", "mail [redacted:email]."),
        ("o'reilly@example.com", "[redacted:email]"),
        ("O'Reilly", "O'Reilly"),
        ("'ann@example.com'", "'[redacted:email]'"),
        ("<Ann.Lee+news@mail.example.co.uk>", "<[redacted:email]>"),
        (
            "пишите: пользователь@пример.рф!",
            "пишите: [redacted:email]!",
        ),
        ("用户@例子.中国", "[redacted:email]"),
        (
            "https://shop.test/?email=ann@example.com&x=1",
            "https://shop.test/?email=[redacted:email]&x=1",
        ),
        (
            "/p?email=ann%40example.com&x=1",
            "/p?email=[redacted:email]&x=1",
        ),
        ("ann@example.com-foo", "[redacted:email]-foo"),
        ("a@b.c", "a@b.c"),
        ("user@localhost", "user@localhost"),
        ("@handle", "@handle"),
        ("ann@.com", "ann@.com"),
        ("100% @ 2", "100% @ 2"),
    ]);
}

#[test]
fn card_table() {
    check_table(&[
        ("4111 1111 1111 1111", "[redacted:card]"),
        ("4111-1111-1111-1111", "[redacted:card]"),
        ("paid with 4111111111111111.", "paid with [redacted:card]."),
        ("Amex 3782 822463 10005 ok", "Amex [redacted:card] ok"),
        ("4222222222222", "[redacted:card]"),
        ("4111 1111 1111 1111 cvv 123", "[redacted:card] cvv 123"),
        (
            "call 020 7946 0958 4111111111111111",
            "call [redacted:phone] [redacted:card]",
        ),
        ("4111 1111 1111 1112", "4111 1111 1111 1112"),
        ("4111111111111112", "4111111111111112"),
        ("ab4111111111111111", "ab4111111111111111"),
        ("4111111111111111xy", "4111111111111111xy"),
        ("4111  1111  1111  1111", "4111  1111  1111  1111"),
    ]);
}

#[test]
fn iban_table() {
    check_table(&[
        ("NL91ABNA0417164300", "[redacted:iban]"),
        (
            "pay to NL91 ABNA 0417 1643 00, thanks",
            "pay to [redacted:iban], thanks",
        ),
        ("DE89 3704 0044 0532 0130 00", "[redacted:iban]"),
        ("GB82 WEST 1234 5698 7654 32", "[redacted:iban]"),
        ("gb82 west 1234 5698 7654 32", "[redacted:iban]"),
        ("nl91abna0417164300", "[redacted:iban]"),
        ("FR14 2004 1010 0505 0001 3M02 606", "[redacted:iban]"),
        // Its account digits 3704 0044 0532 0131 pass Luhn: still one IBAN, not a card.
        ("DE08 3704 0044 0532 0131 00", "[redacted:iban]"),
        ("NL92ABNA0417164300", "NL92ABNA0417164300"),
        ("XX91ABNA0417164300", "XX91ABNA0417164300"),
        ("NL91ABNA04171643001", "NL91ABNA04171643001"),
    ]);
}

#[test]
fn ip_table() {
    check_table(&[
        ("from 192.168.1.23.", "from [redacted:ip]."),
        ("10.0.0.1:8080 down", "[redacted:ip]:8080 down"),
        ("10.0.0.1: down", "[redacted:ip]: down"),
        ("2001:db8::1", "[redacted:ip]"),
        ("[2001:db8::1]:443", "[[redacted:ip]]:443"),
        ("::1", "[redacted:ip]"),
        ("fe80::1%eth0", "[redacted:ip]%eth0"),
        ("::ffff:192.0.2.1", "[redacted:ip]"),
        ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", "[redacted:ip]"),
        ("999.1.1.1", "999.1.1.1"),
        ("version 1.2.3.4.5", "version 1.2.3.4.5"),
        ("v1.2.3.4", "v1.2.3.4"),
        ("at 12:30:45", "at 12:30:45"),
        ("12:30", "12:30"),
        ("00:1a:2b:3c:4d:5e", "00:1a:2b:3c:4d:5e"),
        ("std::vec, dead::beef", "std::vec, dead::beef"),
        ("1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7:8:9"),
    ]);
}

#[test]
fn phone_table() {
    check_table(&[
        ("+31 6 1234 5678", "[redacted:phone]"),
        ("call +1 (555) 123-4567 now", "call [redacted:phone] now"),
        ("(555) 123-4567", "[redacted:phone]"),
        ("020 7946 0958", "[redacted:phone]"),
        ("06-12345678", "[redacted:phone]"),
        ("+31 (0)6 1234 5678", "[redacted:phone]"),
        ("555.123.4567", "[redacted:phone]"),
        ("tel:+31612345678", "tel:[redacted:phone]"),
        ("phone=0612345678&x", "phone=[redacted:phone]&x"),
        ("2024-11-25", "2024-11-25"),
        ("2024-11-25 10:30:45", "2024-11-25 10:30:45"),
        (
            "2024-11-25T10:30:45.123456789Z",
            "2024-11-25T10:30:45.123456789Z",
        ),
        ("25.11.2024 12345", "25.11.2024 12345"),
        ("129.90", "129.90"),
        ("Total 129.90 129.90", "Total 129.90 129.90"),
        ("order-991", "order-991"),
        ("SKU-123456789", "SKU-123456789"),
        ("/products/123456789/reviews", "/products/123456789/reviews"),
        ("ts1732531200000", "ts1732531200000"),
        ("1732531200000ms", "1732531200000ms"),
        ("4111 1111 1111 1112", "4111 1111 1111 1112"),
        ("12345678", "12345678"),
        ("1234567890123456", "1234567890123456"),
    ]);
}

#[test]
fn precedence_and_unicode_table() {
    check_table(&[
        // A Luhn-valid 15-digit number is a card, not a phone.
        ("378282246310005", "[redacted:card]"),
        ("+31612345678@example.com", "[redacted:email]"),
        ("4111111111111111@example.com", "[redacted:email]"),
        (
            "📧 ann@example.com 🎉 020 7946 0958 ✓",
            "📧 [redacted:email] 🎉 [redacted:phone] ✓",
        ),
        (
            "Größe: 4111 1111 1111 1111 — danke",
            "Größe: [redacted:card] — danke",
        ),
        ("é4111111111111111", "é4111111111111111"),
        ("4111111111111111é", "4111111111111111é"),
        ("١٢٣ 10.0.0.1 ٤٥٦", "١٢٣ [redacted:ip] ٤٥٦"),
        (
            "ann@example.com,bob@example.org",
            "[redacted:email],[redacted:email]",
        ),
    ]);
}

/// Compatibility forms (what Japanese and Chinese input methods type, and NFKC's other variants) are read as
/// their ASCII forms, and the stored text is the NFKC form.
#[test]
fn compatibility_forms_table() {
    check_table(&[
        ("４１１１ １１１１ １１１１ １１１１", "[redacted:card]"),
        (
            "カード番号：４１１１　１１１１　１１１１　１１１１。",
            "カード番号:[redacted:card]。",
        ),
        (
            "ｐａｉｄ ４１１１－１１１１－１１１１－１１１１．",
            "paid [redacted:card].",
        ),
        ("ａｎｎ＠ｅｘａｍｐｌｅ．ｃｏｍ", "[redacted:email]"),
        (
            "メール：ann＠example.com まで",
            "メール:[redacted:email] まで",
        ),
        ("ann﹫example.com", "[redacted:email]"),
        ("電話 ０２０ ７９４６ ０９５８", "電話 [redacted:phone]"),
        ("＋３１　６　１２３４　５６７８", "[redacted:phone]"),
        ("ＮＬ９１ＡＢＮＡ０４１７１６４３００", "[redacted:iban]"),
        ("１９２．０．２．１", "[redacted:ip]"),
        // mathematical bold digits and circled digits: NFKC maps them to ASCII digits
        ("𝟒𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏", "[redacted:card]"),
        ("④①①①①①①①①①①①①①①①", "[redacted:card]"),
        ("𝐚𝐧𝐧@𝐞𝐱𝐚𝐦𝐩𝐥𝐞.𝐜𝐨𝐦", "[redacted:email]"),
        // no finding: still stored in NFKC form
        ("Ｔシャツ ｻｲｽﾞ", "Tシャツ サイズ"),
        ("ﬁne", "fine"),
    ]);
}

#[test]
fn text_already_in_nfkc_is_borrowed() {
    for text in ["Größe 42 – Baumwolle", "Tシャツ", "пример", "🎉 café"] {
        assert!(matches!(nfkc(text), Cow::Borrowed(_)), "{text:?}");
        let mut hits = Hits::default();
        assert!(matches!(
            redact(text, &Detectors::all(), &mut hits),
            Cow::Borrowed(_)
        ));
    }
    assert_eq!(nfkc("ｃａｆé"), "café");
    // decomposed `é` composes: NFKC includes canonical composition
    assert_eq!(nfkc("cafe\u{301}"), "café");
}

fn truncated(text: &str, chars: usize) -> String {
    truncate(text, chars, &Detectors::all(), &mut Hits::default())
}

/// Redact first, then cut on a char boundary; a marker is kept whole or not at all.
#[test]
fn truncate_redacts_first_and_never_splits_a_marker() {
    let table: &[(&str, usize, &str)] = &[
        // cutting first would have left `ann@example.c`, which the e-mail scanner no longer recognises
        ("ann@example.com", 13, ""),
        ("mail ann@example.com", 14, "mail "),
        ("mail ann@example.com", 21, "mail [redacted:email]"),
        ("mail ann@example.com later", 22, "mail [redacted:email] "),
        (
            "ａｎｎ＠ｅｘａｍｐｌｅ．ｃｏｍ ｏｋ",
            16,
            "[redacted:email]",
        ),
        ("card 4111 1111 1111 1111", 12, "card "),
        ("T-shirt Größe 42", 9, "T-shirt G"),
        ("🎉🎉🎉 ok", 2, "🎉🎉"),
        ("", 3, ""),
        // the cut shortens a 20-digit run (no kind) to a phone-sized one: redacted again, then cut again
        ("ref 12345678901234567890", 14, "ref "),
        ("ref 12345678901234567890", 40, "ref 12345678901234567890"),
    ];
    for (text, n, want) in table {
        let got = truncated(text, *n);
        assert_eq!(&got, want, "{text:?} truncate:{n}");
        assert!(got.chars().count() <= *n);
        assert_eq!(run(&got, Detectors::all()).0, got, "{text:?} truncate:{n}");
    }
}

#[test]
fn hits_count_per_kind() {
    let text =
        "ann@example.com bob@example.org 4111 1111 1111 1111 NL91ABNA0417164300 ::1 020 7946 0958";
    let (out, hits) = run(text, Detectors::all());
    assert_eq!(
        out,
        "[redacted:email] [redacted:email] [redacted:card] [redacted:iban] [redacted:ip] \
         [redacted:phone]"
    );
    let want = [(Email, 2), (Card, 1), (Iban, 1), (Ip, 1), (Phone, 1)];
    for (kind, n) in want {
        assert_eq!(hits.get(kind), n, "{kind:?}");
    }
    assert_eq!(hits.total(), 6);
    let mut sum = hits;
    sum.merge(&hits);
    assert_eq!((sum.get(Email), sum.total()), (4, 12));
}

const SAMPLES: [(DetectorKind, &str); 5] = [
    (Email, "ann@example.com"),
    (Card, "4111 1111 1111 1111"),
    (Iban, "NL91 ABNA 0417 1643 00"),
    (Ip, "192.168.1.23"),
    (Phone, "+31 6 1234 5678"),
];

#[test]
fn disabled_kind_is_left_in_place() {
    let text = SAMPLES.map(|(_, s)| s).join(" and ");
    for (kind, sample) in SAMPLES {
        let (out, hits) = run(&text, Detectors::all().without(kind));
        assert!(out.contains(sample), "{kind:?} was redacted: {out}");
        assert_eq!(out.matches("[redacted:").count(), 4, "{kind:?}: {out}");
        assert_eq!((hits.get(kind), hits.total()), (0, 4), "{kind:?}");
        let (only, _) = run(&text, Detectors::none().with(kind));
        let marker = format!("[redacted:{}]", kind.label());
        assert_eq!(only.matches("[redacted:").count(), 1, "{kind:?}: {only}");
        assert_eq!(only, text.replace(sample, &marker));
    }
    assert_eq!(run(&text, Detectors::none()).0, text);
}

#[test]
fn labels_round_trip_and_detector_sets() {
    for kind in DetectorKind::ALL {
        assert_eq!(DetectorKind::parse(kind.label()), Some(kind));
        assert!(Detectors::all().is_enabled(kind));
        assert!(!Detectors::none().is_enabled(kind));
        assert!(!Detectors::all().without(kind).is_enabled(kind));
        assert_eq!(
            Detectors::none().with(kind).without(kind),
            Detectors::none()
        );
    }
    assert_eq!(DetectorKind::parse("Email"), None);
    assert_eq!(DetectorKind::parse(""), None);
}

#[test]
fn clean_text_is_borrowed() {
    let clean = [
        "T-shirt",
        "Pro",
        "",
        "Nike Air Max 90 – Größe 42, 100 % Baumwolle",
        "Version 2.1 released 2024-11-25 at 10:30",
        "O'Reilly & Sons: std::vector<int> 🎉",
    ];
    for text in clean {
        let mut hits = Hits::default();
        let out = redact(text, &Detectors::all(), &mut hits);
        assert!(matches!(out, Cow::Borrowed(_)), "{text:?} -> {out:?}");
        assert_eq!(hits.total(), 0);
    }
}

/// 64 KiB inputs built to defeat naive scanners (a rescan from every `@`, digit, group or colon would make them
/// quadratic). They only have to finish, and stay idempotent: linearity is by design (module docs), and the
/// project does not assert on timing.
#[test]
fn pathological_inputs_complete() {
    const N: usize = 64 * 1024;
    let units = [
        "a@", "é@", "a%40", "x@a.bc ", "1 ", "1-", "1.", ":", "1:", "a:", "::1 ", "+(", "(1", "1",
        "a.", "4111 ", "DE89 ", "ab12", "0-", "1.2.3.4.", "a",
    ];
    let mixed: String = (0..N)
        .map(|i| ["1", "-", " ", "@", ".", ":", "a"][i * 7 % 11 % 7])
        .collect();
    let inputs = units.map(|unit| unit.repeat(N / unit.len()));
    for text in inputs.iter().chain([&mixed]) {
        let (out, _) = run(text, Detectors::all());
        let head: String = text.chars().take(8).collect();
        assert_eq!(run(&out, Detectors::all()).0, out, "{head:?}...");
    }
}

const EMAILS: &[&str] = &[
    "ann@example.com",
    "o'reilly@example.co.uk",
    "first.last+tag@sub.example.org",
    "пользователь@пример.рф",
    "用户@例子.中国",
    "ann%40example.com",
];
const CARDS: &[&str] = &[
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
    "5555555555554444",
    "378282246310005",
    "3782 822463 10005",
    "6011 1111 1111 1117",
];
const IBANS: &[&str] = &[
    "NL91ABNA0417164300",
    "NL91 ABNA 0417 1643 00",
    "DE89 3704 0044 0532 0130 00",
    "GB82 WEST 1234 5698 7654 32",
    "be68 5390 0754 7034",
    "FR14 2004 1010 0505 0001 3M02 606",
];
const IPS: &[&str] = &[
    "192.168.1.23",
    "10.0.0.1",
    "2001:db8::1",
    "::1",
    "::ffff:192.0.2.1",
    "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
];
const PHONES: &[&str] = &[
    "+31 6 1234 5678",
    "+1 (555) 123-4567",
    "(555) 123-4567",
    "020 7946 0958",
    "06-12345678",
    "555.123.4567",
];

fn planted() -> impl Strategy<Value = (Vec<&'static str>, Vec<String>)> {
    use proptest::sample::select;
    let samples = (
        select(EMAILS),
        select(CARDS),
        select(IBANS),
        select(IPS),
        select(PHONES),
    )
        .prop_flat_map(|(a, b, c, d, e)| Just(vec![a, b, c, d, e]).prop_shuffle());
    // Filler: any text without ASCII digits or the characters that join tokens, nor compatibility forms of
    // them (`²`, `＠`), which the scanners read as those; spaces keep it apart.
    fn joins(c: char) -> bool {
        c.is_ascii_digit() || "@%:.+()-".contains(c)
    }
    let plain = |f: String| -> String {
        f.chars()
            .map(|c| {
                if nfkc(c.encode_utf8(&mut [0; 4])).contains(joins) {
                    ' '
                } else {
                    c
                }
            })
            .collect()
    };
    let filler = prop::collection::vec("[^0-9@%:.+()\\-]{0,12}".prop_map(plain), 6);
    (samples, filler)
}

proptest! {
    #[test]
    fn planted_samples_never_survive((samples, filler) in planted()) {
        let mut text = filler[0].clone();
        for (sample, fill) in samples.iter().zip(&filler[1..]) {
            text.push_str(&format!(" {sample} {fill}"));
        }
        let (out, hits) = run(&text, Detectors::all());
        for sample in &samples {
            prop_assert!(!out.contains(sample), "{:?} survived in {:?}", sample, out);
        }
        prop_assert!(hits.total() >= 5);
        prop_assert_eq!(run(&out, Detectors::all()).0, out);
    }

    #[test]
    fn truncate_leaves_no_finding_and_no_partial_marker(text in "[0-9a-z :.+@\\-]{0,60}", n in 1usize..40) {
        let out = truncated(&text, n);
        prop_assert!(out.chars().count() <= n);
        prop_assert_eq!(run(&out, Detectors::all()).0, out.clone());
        // the input holds no `[`: each one opens a marker, which must be whole
        let partial = out.rfind('[').is_some_and(|i| !DetectorKind::ALL.iter().any(|k| out[i..].starts_with(k.marker())));
        prop_assert!(!partial, "{:?} truncate:{} -> {:?}", text, n, out);
    }

    #[test]
    fn arbitrary_text_never_panics_and_is_idempotent(text in "\\PC*") {
        let (out, _) = run(&text, Detectors::all());
        prop_assert_eq!(run(&out, Detectors::all()).0, out);
    }

    #[test]
    fn dense_text_is_idempotent(text in "[0-9a-fA-Z :.+()\\-@%_é\\[\\]]{0,80}") {
        let (out, _) = run(&text, Detectors::all());
        prop_assert_eq!(run(&out, Detectors::all()).0, out);
    }
}

/// Pieces of every kind, `|`-separated, glued or spaced in any order: fuzzes the boundaries between findings.
const SOUP: &str = "4111|1111|0417|NL91|ABNA|00| | | |-|.|:|::|1|12|123|0612345678|@|ann|example.com|%40|+|(|)|555|a|\
    fe80|192|168|_|é|[|]|DE89|3704|T|10|1643|ffff|0.2.1|'|x|255|8|2001|db8|/|=|g|ab|3782|822463|10005|5|9|0|12:30|\
    .com|GB82|WEST|nl|de| (|) |e|\n|%|4|07|+31|2024-11-25|0131|0532|ann.|o'|пр|.рф|%2B|&|?|<|>|1.2.3.4|::1|fe80::|\
    10.0.0.1:|::ffff:|4111111111111111|378282246310005|NL91ABNA0417164300|DE08|0044|+1 (555) 123-4567|06-|7|,|🎉";

proptest! {
    #[test]
    fn token_soup_is_idempotent_for_any_detector_set(
        pieces in prop::collection::vec(prop::sample::select(SOUP.split('|').collect::<Vec<_>>()), 0..30),
        mask in 0u8..32,
    ) {
        let text = pieces.concat();
        let detectors = Detectors { mask };
        let mut hits = Hits::default();
        let out = redact(&text, &detectors, &mut hits).into_owned();
        prop_assert_eq!(redact(&out, &detectors, &mut hits), out.as_str(), "input {:?}", text);
    }
}
