use super::*;

fn engine(cfg: AnomalyConfig) -> Engine {
    Engine::new(&cfg).unwrap()
}

fn one(e: &Engine, field: &str, value: &str) -> Verdict {
    e.score_strings("shop", [(field, value)].into_iter(), Some("Mozilla/5.0"))
}

#[test]
fn every_rule_compiles_at_every_paranoia_level() {
    for pl in 1..=4 {
        let e = engine(AnomalyConfig {
            paranoia: pl,
            ..AnomalyConfig::default()
        });
        assert!(e.set_rules.len() >= rules::RULES.iter().filter(|r| r.paranoia <= pl).count());
    }
    assert_eq!(
        Engine::new(&AnomalyConfig {
            paranoia: 5,
            ..Default::default()
        })
        .unwrap_err(),
        AnomalyError::Paranoia(5)
    );
    assert_eq!(
        Engine::new(&AnomalyConfig {
            threshold: 0,
            ..Default::default()
        })
        .unwrap_err(),
        AnomalyError::Threshold
    );
}

#[test]
fn rule_ids_are_unique_and_labels_round_trip() {
    let mut ids: Vec<u32> = rules::RULES.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), rules::RULES.len());
    for f in Family::ALL {
        assert_eq!(Family::from_label(f.label()), Some(f));
    }
}

#[test]
fn table_of_attacks_and_look_alikes() {
    let e = engine(AnomalyConfig::default());
    let table: &[(&str, Option<Family>)] = &[
        ("' OR 1=1--", Some(Family::Sqli)),
        ("1 UNION SELECT null,null--", Some(Family::Sqli)),
        ("x'; DROP TABLE users;--", Some(Family::Sqli)),
        ("%27%20or%20%271%27%3D%271", Some(Family::Sqli)),
        ("<script>alert(1)</script>", Some(Family::Xss)),
        ("&lt;img src=x onerror=alert(1)&gt;", Some(Family::Xss)),
        ("＜ｓｃｒｉｐｔ＞", Some(Family::Xss)),
        ("../../../../etc/passwd", Some(Family::Traversal)),
        ("; cat /etc/passwd", Some(Family::Traversal)),
        ("| whoami", Some(Family::CommandInjection)),
        ("{{7*7}}", Some(Family::TemplateInjection)),
        ("${jndi:ldap://x.example/a}", Some(Family::Jndi)),
        ("Select Specialty Hospital Gift Card", None),
        ("Drop Table Lamp", None),
        ("Union Jack T-shirt", None),
        ("Tom & Jerry", None),
        ("O'Reilly", None),
        ("JavaScript: The Good Parts", None),
        ("Why you should never type rm -rf / at home", None),
        ("{{ product.title }}", None),
    ];
    for (value, family) in table {
        let v = one(&e, "cart.items[0].name", value);
        match family {
            Some(f) => {
                assert!(v.blocked, "{value}: {v:?}");
                assert!(v.hits.iter().any(|h| h.family == *f), "{value}: {v:?}");
            }
            None => assert_eq!(v.score, 0, "{value}: {v:?}"),
        }
    }
}

#[test]
fn detect_mode_scores_without_blocking_and_off_skips() {
    let families = FamilyModes::default().with(Family::Sqli, Mode::Detect);
    let e = engine(AnomalyConfig {
        families,
        ..AnomalyConfig::default()
    });
    let v = one(&e, "page_url", "' or 1=1--");
    assert!(v.score >= 5 && !v.blocked && v.enforced_score == 0, "{v:?}");

    let families = FamilyModes::default().with(Family::Sqli, Mode::Off);
    let e = engine(AnomalyConfig {
        families,
        ..AnomalyConfig::default()
    });
    assert_eq!(one(&e, "page_url", "' or 1=1--").score, 0);
}

#[test]
fn exclusions_by_tenant_field_and_family() {
    let ex = |tenant: Option<&str>, prefix: &str, family| Exclusion {
        tenant: tenant.map(str::to_owned),
        field_prefix: prefix.into(),
        family,
    };
    let e = engine(AnomalyConfig {
        exclusions: vec![
            ex(Some("shop"), "cart.items", Some(Family::Sqli)),
            ex(None, "plan.name", None),
        ],
        ..AnomalyConfig::default()
    });
    let attack = "' or 1=1--";
    let score = |tenant: &str, field: &str| {
        e.score_strings(tenant, [(field, attack)].into_iter(), None)
            .score
    };
    assert_eq!(score("shop", "cart.items[0].name"), 0);
    assert!(score("other", "cart.items[0].name") >= 5);
    assert!(
        score("shop", "cart.items_note") >= 5,
        "prefix stops at a path boundary"
    );
    assert_eq!(score("other", "plan.name"), 0);
    assert!(score("shop", "customer.first_name") >= 5);
}

#[test]
fn scanner_user_agents_and_paranoia() {
    let e = engine(AnomalyConfig::default());
    let v = e.score_strings(
        "shop",
        std::iter::empty(),
        Some("sqlmap/1.7.2#stable (https://sqlmap.org)"),
    );
    assert!(v.blocked && v.hits[0].family == Family::Scanner, "{v:?}");
    let v = e.score_strings("shop", std::iter::empty(), Some("python-requests/2.31"));
    assert_eq!(v.score, 0, "libraries only from paranoia 2");
    let e2 = engine(AnomalyConfig {
        paranoia: 2,
        ..AnomalyConfig::default()
    });
    let v = e2.score_strings("shop", std::iter::empty(), Some("python-requests/2.31"));
    assert_eq!(v.score, 2);
    let v = e.score_strings("shop", std::iter::empty(), Some("${jndi:ldap://evil/x}"));
    assert!(v.blocked && v.hits[0].family == Family::Jndi, "{v:?}");
    // any case, and past the 512 bytes lower-cased on the stack
    for ua in [
        "SQLMap/1.7",
        &format!("{}NiKtO/2.5", "Mozilla/5.0 ".repeat(60)),
    ] {
        let v = e.score_strings("shop", std::iter::empty(), Some(ua));
        assert!(v.blocked, "{ua}");
    }
}

#[test]
fn scanner_needles_are_lower_case() {
    for s in super::rules::SCANNERS {
        assert_eq!(
            s.needle,
            s.needle.to_ascii_lowercase(),
            "the fast check lower-cases the user agent"
        );
    }
}

#[test]
fn protocol_facts() {
    let e = engine(AnomalyConfig::default());
    let facts = ProtocolFacts {
        content_type: Some("text/plain;charset=UTF-8"),
        ..Default::default()
    };
    assert_eq!(
        e.score("shop", &facts, std::iter::empty(), Some("ua"))
            .score,
        0
    );
    let facts = ProtocolFacts {
        content_type: Some("application/xml"),
        ..Default::default()
    };
    assert!(
        e.score("shop", &facts, std::iter::empty(), Some("ua"))
            .blocked
    );
    let facts = ProtocolFacts {
        duplicate_key: Some("cart.value"),
        ..Default::default()
    };
    let v = e.score("shop", &facts, std::iter::empty(), Some("ua"));
    assert_eq!((v.score, v.blocked), (4, false));
    let facts = ProtocolFacts {
        duplicate_key: Some("cart.value"),
        schema_errors: 2,
        ..Default::default()
    };
    assert!(
        e.score("shop", &facts, std::iter::empty(), Some("ua"))
            .blocked,
        "4 + 3 >= 5"
    );
}

#[test]
fn hits_are_bounded_but_scores_are_not() {
    let e = engine(AnomalyConfig::default());
    let fields: Vec<String> = (0..100).map(|i| format!("cart.items[{i}].name")).collect();
    let v = e.score_strings(
        "shop",
        fields.iter().map(|f| (f.as_str(), "<script>")),
        None,
    );
    assert_eq!(v.hits.len(), MAX_HITS);
    assert!(v.score >= 500);
}

#[test]
fn browser_user_agents_are_not_payload_scanned_but_injected_ones_are() {
    let e = engine(AnomalyConfig::default());
    let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36";
    assert_eq!(
        e.score_strings("shop", std::iter::empty(), Some(chrome))
            .score,
        0
    );
    for ua in [
        "() { :; }; /bin/bash -c id",
        "Mozilla/5.0' or 1=1--",
        "<script>alert(1)</script>",
    ] {
        assert!(
            e.score_strings("shop", std::iter::empty(), Some(ua))
                .blocked,
            "{ua}"
        );
    }
}
