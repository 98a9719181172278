//! Rendering against a fake [`Secrets`] (the agent's tests render against the real daemon).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use coffer_crypto::SecretBytes;
use coffer_types::{Kind, Namespace, NvIndex, SecretMeta, SecretName, Timestamp, Version};

use super::{Missing, Problem, RenderError, Rendered, Secrets, Template};

const A: &str = "S3CRET-alpha-7731";
const B: &str = "S3CRET-bravo-0042";
const DB: &str = r#"{"user":"app","pass":"S3CRET-kvpass-99","port":5432,"tls":{"mode":"verify-full"},
    "hosts":["h1","h2"],"a.b":"dotted","a":{"b":"nested"},"none":null}"#;

/// Secrets in memory, counting fetches.
#[derive(Default)]
struct Fake {
    values: HashMap<(String, String), Vec<u8>>,
    fetches: RefCell<Vec<(String, String)>>,
}

impl Fake {
    fn new() -> Self {
        let mut f = Self::default();
        f.put("default", "a", A.as_bytes());
        f.put("default", "b", B.as_bytes());
        f.put("default", "db", DB.as_bytes());
        f.put("prod", "c", b"charlie");
        f.put("default", "bin", &[0xff, 0xfe, 0x00, 0x41]);
        f
    }

    fn put(&mut self, ns: &str, name: &str, value: &[u8]) {
        self.values
            .insert((ns.to_owned(), name.to_owned()), value.to_vec());
    }

    fn key(&self, ns: Option<&str>, name: &str) -> (String, String) {
        (
            ns.unwrap_or(self.default_namespace()).to_owned(),
            name.to_owned(),
        )
    }

    fn find(&self, ns: Option<&str>, name: &str) -> Result<&Vec<u8>, Missing> {
        let key = self.key(ns, name);
        self.fetches.borrow_mut().push(key.clone());
        self.values.get(&key).ok_or_else(|| Missing {
            reference: super::reference(ns, name),
            // Like the daemon's, the message repeats the name.
            reason: format!("not_found: no secret named {name}"),
        })
    }

    fn fetched(&self, name: &str) -> usize {
        self.fetches.borrow().iter().filter(|k| k.1 == name).count()
    }
}

impl Secrets for Fake {
    fn value(&self, ns: Option<&str>, name: &str) -> Result<SecretBytes, Missing> {
        self.find(ns, name).map(|v| SecretBytes::copy_from(v))
    }

    fn meta(&self, ns: Option<&str>, name: &str) -> Result<SecretMeta, Missing> {
        self.find(ns, name)?;
        let (ns, name) = self.key(ns, name);
        Ok(SecretMeta {
            namespace: ns.parse::<Namespace>().expect("namespace"),
            name: name.parse::<SecretName>().expect("name"),
            index: NvIndex::from_slot(1).expect("index"),
            current: Version::new(7).expect("version"),
            kind: if name == "db" { Kind::Kv } else { Kind::Line },
            created: Timestamp::from_millis(1_700_000_000_000),
            updated: Timestamp::from_millis(1_800_000_000_000),
            description: Some(format!("the {name} secret")),
            generated: None,
            max_versions: None,
            revoked: None,
            custom_metadata: BTreeMap::from([("owner".to_owned(), "team-x".to_owned())]),
            cas_required: false,
            delete_version_after: None,
            versions: Vec::new(),
            rotation: None,
            tags: Default::default(),
        })
    }
}

fn render(text: &str) -> Result<Rendered, RenderError> {
    Template::compile("app.conf.tmpl", text)
        .expect("compiles")
        .render(&Fake::new())
}

fn uses(list: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    list.iter()
        .map(|(ns, n)| ((*ns).to_owned(), (*n).to_owned()))
        .collect()
}

/// The text of an error, as the agent would log it, checked for every value.
fn text_of(e: &RenderError) -> String {
    let shown = format!("{e} {e:?}");
    for value in [A, B, "S3CRET", "kvpass", "charlie"] {
        assert!(!shown.contains(value), "{value} in {shown}");
    }
    shown
}

#[test]
fn three_secrets_render() {
    let text = "user = {{ kv(\"db\", \"user\") }}\n\
                password = {{ secret(\"a\") }}\n\
                other = {{ secret(\"c\", namespace=\"prod\") }}\n\
                port = {{ kv(\"db\", \"port\") }}\n\
                tls = {{ kv(\"db\", \"tls.mode\") }}\n";
    let r = render(text).expect("renders");
    assert_eq!(
        r.text.as_str(),
        format!("user = app\npassword = {A}\nother = charlie\nport = 5432\ntls = verify-full\n")
    );
    assert_eq!(
        r.uses,
        uses(&[("default", "a"), ("default", "db"), ("prod", "c")])
    );
}

#[test]
fn metadata_version_and_encodings() {
    let text = "{{ version(\"a\") }} {{ meta(\"db\").kind }} {{ meta(\"a\").description }} \
                {{ meta(\"a\").custom_metadata.owner }} {{ meta(\"a\").updated }}\n\
                {{ secret(\"a\") | b64encode }} {{ secret(\"a\") | b64encode | b64decode }}\n\
                {{ secret_base64(\"bin\") }} {{ \"q\\\"x\\n\" | json_escape }} {{ secret(\"a\") | tojson }}\n\
                {{ kv(\"db\", \"tls\") }}";
    let r = render(text).expect("renders");
    let b64 = data_encoding::BASE64.encode(A.as_bytes());
    assert_eq!(
        r.text.as_str(),
        format!(
            "7 kv the a secret team-x 2027-01-15T08:00:00.000Z\n{b64} {A}\n//4AQQ== q\\\"x\\n \"{A}\"\n{{\"mode\":\"verify-full\"}}"
        )
    );
    assert_eq!(
        r.uses,
        uses(&[("default", "a"), ("default", "bin"), ("default", "db")])
    );
}

#[test]
fn each_secret_is_fetched_once_per_render() {
    let fake = Fake::new();
    let t = Template::compile(
        "t",
        "{{ secret('a') }}{{ secret('a') }}{{ secret('a') | b64encode }}{{ kv('db','user') }}{{ kv('db','port') }}",
    )
    .expect("compiles");
    t.render(&fake).expect("renders");
    assert_eq!(fake.fetched("a"), 1);
    assert_eq!(fake.fetched("db"), 1);
    // A second render fetches again: nothing is kept between renders.
    t.render(&fake).expect("renders");
    assert_eq!(fake.fetched("a"), 2);
}

#[test]
fn a_missing_secret_fails_naming_it_and_its_line() {
    let e = render("a = {{ secret('a') }}\nb = {{ secret('nope') }}\n").expect_err("fails");
    assert_eq!(e.line, Some(2));
    assert!(
        matches!(&e.problem, Problem::Missing(m) if m.reference == "nope"),
        "{e:?}"
    );
    let shown = text_of(&e);
    assert!(
        shown.starts_with("app.conf.tmpl line 2: secret nope is unavailable: not_found"),
        "{shown}"
    );
    // The agent re-renders when the missing one appears.
    assert_eq!(e.uses, uses(&[("default", "a"), ("default", "nope")]));

    let e = render("{{ secret('c', namespace='dev') }}").expect_err("fails");
    assert!(text_of(&e).contains("secret dev/c is unavailable"));
    assert_eq!(e.uses, uses(&[("dev", "c")]));
}

#[test]
fn a_missing_kv_field_fails_naming_it() {
    let e = render("\n{{ kv('db', 'password') }}").expect_err("fails");
    assert_eq!(e.line, Some(2));
    let shown = text_of(&e);
    assert!(
        shown.starts_with("app.conf.tmpl line 2: secret db has no field `password`"),
        "{shown}"
    );
    let e = render("{{ kv('db', 'tls.nope') }}").expect_err("fails");
    assert!(text_of(&e).contains("has no field `tls.nope`"));
    let e = render("{{ kv('a', 'x') }}").expect_err("fails");
    assert!(text_of(&e).contains("secret a is not JSON"));
}

#[test]
fn a_value_that_is_not_text_fails_naming_it() {
    let e = render("{{ secret('bin') }}").expect_err("fails");
    assert!(text_of(&e).contains("secret bin is not UTF-8 text"), "{e}");
}

#[test]
fn errors_never_contain_a_value() {
    let cases = [
        ("{{ secret('a') | int }}", "invalid operation"),
        ("{{ secret('a') | b64decode }}", "not standard base64"),
        ("{{ secret('a') }}\n{{ nope }}", "undefined value"),
        ("{{ secret('a') + 1 }}", "invalid operation"),
        ("{{ secret('a').foo }}", "undefined value"),
        ("{{ secret('a') | float }}", "invalid operation"),
        ("{{ range(secret('a')) }}", ""),
        (
            "{{ secret('a') | nofilter }}",
            "unknown filter: filter nofilter is unknown",
        ),
        ("{{ kv('db', 'pass') | int }}", "invalid operation"),
        ("{{ kv('db', secret('a')) }}", "has no such field"),
        (
            "{{ secret(secret('b')) }}",
            "(a name the template computed)",
        ),
        (
            "{{ version(secret('b')) }}",
            "(a name the template computed)",
        ),
        (
            "{{ secret('a', namespace=secret('b')) }}",
            "(a name the template computed)",
        ),
        (
            "{{ kv(secret('a'), 'x') }}",
            "(a name the template computed)",
        ),
        (
            "{{ secret('a') | b64encode | b64decode | int }}",
            "invalid operation",
        ),
        (
            "{% for c in secret('a') %}{{ c | int }}{% endfor %}",
            "invalid operation",
        ),
        (
            "{{ {'k': secret('a')} | dictsort | int }}",
            "invalid operation",
        ),
        ("{{ secret('a') | round }}", ""),
        ("{{ secret('a') * secret('b') }}", ""),
    ];
    for (text, expected) in cases {
        let e = render(text).expect_err(text);
        let shown = text_of(&e);
        assert!(shown.contains(expected), "{text}: {shown}");
    }
}

#[test]
fn uses_lists_exactly_the_secrets_touched() {
    let text = "{% if false %}{{ secret('never') }}{% endif %}\
                {{ version('a') }}{{ meta('b').kind }}{{ kv('db', 'user') }}\
                {{ secret('c', namespace='prod') }}";
    let r = render(text).expect("renders");
    assert_eq!(
        r.uses,
        uses(&[
            ("default", "a"),
            ("default", "b"),
            ("default", "db"),
            ("prod", "c")
        ])
    );
    // A template with no secret uses none.
    assert!(
        render("plain {{ 1 + 1 }}")
            .expect("renders")
            .uses
            .is_empty()
    );
}

#[test]
fn the_default_namespace_is_the_secrets_own() {
    struct Prod(Fake);
    impl Secrets for Prod {
        fn value(&self, ns: Option<&str>, name: &str) -> Result<SecretBytes, Missing> {
            self.0.value(Some(ns.unwrap_or("prod")), name)
        }
        fn meta(&self, ns: Option<&str>, name: &str) -> Result<SecretMeta, Missing> {
            self.0.meta(Some(ns.unwrap_or("prod")), name)
        }
        fn default_namespace(&self) -> &str {
            "prod"
        }
    }
    let t = Template::compile("t", "{{ secret('c') }}").expect("compiles");
    let r = t.render(&Prod(Fake::new())).expect("renders");
    assert_eq!(r.text.as_str(), "charlie");
    assert_eq!(r.uses, uses(&[("prod", "c")]));
}

#[test]
fn a_syntax_error_names_the_template_and_line() {
    let e = Template::compile("app.conf.tmpl", "ok\n{{ secret('a') }}\n{% if %}\n")
        .expect_err("bad syntax");
    let shown = e.to_string();
    assert!(
        shown.starts_with("app.conf.tmpl line 3: syntax error"),
        "{shown}"
    );
    let e = Template::compile("t", &"x".repeat(super::MAX_SOURCE + 1)).expect_err("too big");
    assert!(e.to_string().contains("more than the 1048576"), "{e}");
}

#[test]
fn strict_and_literal() {
    // An undefined variable fails even where Jinja would print nothing.
    let e = render("{{ nothing }}").expect_err("strict");
    assert!(matches!(e.problem, Problem::Template(ref t) if t.starts_with("undefined value")));
    let e = render("{% if nothing %}x{% endif %}").expect_err("strict");
    assert_eq!(e.line, Some(1));
    // No HTML escaping, and the last newline stays.
    let r = render("{{ '<a&b>' }}\n").expect("renders");
    assert_eq!(r.text.as_str(), "<a&b>\n");
}

#[test]
fn the_output_is_capped() {
    let t = Template::compile("t", "{% for i in range(100) %}0123456789abcdef{% endfor %}")
        .expect("compiles")
        .with_limits(1000, super::FUEL);
    let e = t.render(&Fake::new()).expect_err("too large");
    assert_eq!(e.problem, Problem::TooLarge { limit: 1000 });
    assert!(e.to_string().contains("larger than 1000 bytes"));
    // The default cap: 17 MiB of output (within the fuel) is refused.
    let e = render("{{ 'x' * 17825792 }}").expect_err("too large");
    assert_eq!(
        e.problem,
        Problem::TooLarge {
            limit: super::MAX_OUTPUT
        }
    );
}

#[test]
fn work_and_recursion_are_bounded() {
    let e =
        render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")
            .expect_err("out of fuel");
    assert_eq!(e.problem, Problem::OutOfFuel, "{e}");
    let e = render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").expect_err("deep");
    assert!(e.to_string().contains("recursion limit exceeded"), "{e}");
    // Templates cannot read files.
    assert!(Template::compile("t", "{% include '/etc/passwd' %}").is_err());
}

#[test]
fn templates_cannot_dump_their_state() {
    let e = render("{% set x = secret('a') %}{{ debug() }}").expect_err("no debug()");
    assert!(text_of(&e).contains("unknown function"), "{e}");
}

#[test]
fn paths_loops_and_nothing() {
    let text = "{{ kv('db', 'hosts.1') }} {{ kv('db', 'a.b') }} {{ kv('db', 'none') }} \
                {% for h in ['x', 'y', 'z'] %}{% if loop.index > 2 %}{% break %}{% endif %}{{ h }}{% endfor %} \
                [{{ meta('c', namespace='prod').description }}]";
    let r = render(text).expect("renders");
    assert_eq!(r.text.as_str(), "h2 dotted null xy [the c secret]");
}

#[test]
fn templates_and_results_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Template>();
    send_sync::<Rendered>();
    send_sync::<RenderError>();
}
