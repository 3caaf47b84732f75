//! A revocation rolled out with `systemctl reload emqx` (issue #25), in a
//! real systemd: the unit's broker reads /etc/emqx/passwd (made by
//! `mosquitto_passwd`) and /etc/emqx/acl; an operator removes mallory
//! from one and carol's rule from the other and reloads. mallory's
//! connections (mosquitto_sub at 3.1.1 and 5) are closed, the journal
//! counts them as closed by policy, carol's topic is refused from then
//! on, and the authenticated load on both listeners (TLS too) loses
//! nothing.

use std::time::Duration;

use emqx_testkit::sandbox::{assert_moved, CERTS};
use emqx_testkit::Sandbox;

const ACL: &str = "pattern deny emqx-load/denied\npattern read $SYS/broker/version\npattern write +/+/%c/+\npattern read +/+/+/%u\n";
const RULES: &str =
    "user carol\ntopic readwrite carol/#\nuser mallory\ntopic readwrite mallory/#\n";

/// Installs the password file of these users and `acl` as the unit's
/// (replaced whole, as an operator's tools do).
fn install_files(sb: &Sandbox, users: &[(&str, &str)], acl: &str) {
    let mut script =
        String::from("set -e\nrm -f /etc/emqx/passwd.new\ntouch /etc/emqx/passwd.new\n");
    for (user, pw) in users {
        script.push_str(&format!(
            "mosquitto_passwd -b /etc/emqx/passwd.new {user} {pw}\n"
        ));
    }
    script.push_str(&format!(
        "chmod 0644 /etc/emqx/passwd.new\nmv /etc/emqx/passwd.new /etc/emqx/passwd\n\
         printf '%s' '{acl}' > /etc/emqx/acl.new\nchmod 0644 /etc/emqx/acl.new\nmv /etc/emqx/acl.new /etc/emqx/acl\n"
    ));
    sb.ok(&script);
}

fn load_users() -> Vec<(&'static str, &'static str)> {
    vec![
        ("load-0", "emqx-load"),
        ("load-1", "emqx-load"),
        ("load-2", "emqx-load"),
        ("load-3", "emqx-load"),
    ]
}

#[test]
fn systemctl_reload_rolls_out_a_revocation() {
    let sb = Sandbox::with_emqx("auth", "", 1.0);
    let mut users = load_users();
    users.extend([("mallory", "mallory-pw"), ("carol", "carol-pw")]);
    install_files(&sb, &users, &format!("{ACL}{RULES}"));
    sb.ok("printf '[Service]\\nEnvironment=EMQX_AUTH_PASSWORD_FILE=/etc/emqx/passwd EMQX_AUTH_ACL_FILE=/etc/emqx/acl\\n' > /etc/systemd/system/emqx.service.d/auth.conf && systemctl daemon-reload");
    sb.add_release("5.0.0", true, "");
    sb.ok("emqx-relup install 5.0.0 && systemctl start emqx");
    let pid0 = sb.wait_active(Duration::from_secs(10));
    let load = sb.start_load_with(&format!(
        "--addr 127.0.0.1:1883 --tls-addr 127.0.0.1:8883 --cafile {CERTS}/cacert.pem --password emqx-load"
    ));
    let out = sb.share.path();
    let mut mallory = Vec::new();
    for v in ["mqttv311", "mqttv5"] {
        mallory.push(sb.spawn(&format!(
            "exec mosquitto_sub -h 127.0.0.1 -p 1883 -V {v} -i m-{v} -u mallory -P mallory-pw -t 'mallory/#' -d > {}/m-{v}.out 2>&1",
            out.display()
        )));
    }
    std::thread::sleep(Duration::from_millis(500));
    let carol =
        "mosquitto_pub -h 127.0.0.1 -p 1883 -V mqttv5 -u carol -P carol-pw -t carol/x -m x -q 1 -d";
    assert!(sb.ok(carol).contains("RC:16"), "no subscriber, allowed");

    users.retain(|(u, _)| *u != "mallory");
    install_files(
        &sb,
        &users,
        &format!("{ACL}user mallory\ntopic readwrite mallory/#\n"),
    );
    sb.ok("systemctl reload emqx");
    let pid1 = sb.main_pid();
    assert_ne!(pid1, pid0);
    assert_eq!(sb.active_state(), "active");
    let journal = sb.journal();
    assert!(journal.contains("2 of them closed by policy"), "{journal}");
    // mosquitto_sub gives up: at 5 on the DISCONNECT 0x87, at 3.1.1 when
    // its next CONNECT is refused.
    for (v, mut child) in ["mqttv311", "mqttv5"].into_iter().zip(mallory) {
        let status = child.wait().unwrap();
        let text = std::fs::read_to_string(out.join(format!("m-{v}.out"))).unwrap();
        let why = match v {
            // 3.1.1 has no DISCONNECT from the broker: it tries again.
            "mqttv311" => "Connection Refused: not authorised",
            _ => "Received DISCONNECT (135)",
        };
        assert!(text.contains(why), "{v}: {text}");
        // (mosquitto_sub exits 0 on a DISCONNECT, 1 on a refusal.)
        assert_eq!(status.success(), v == "mqttv5", "{v}: {text}");
    }
    let refused = sb.sh(carol);
    let said = String::from_utf8_lossy(&refused.stdout);
    assert!(said.contains("RC:135"), "carol's rule is gone: {said}");
    let report = sb.stop_load(load);
    assert_moved(&report);
    assert_eq!(report["auth_refused"], 0, "{report:#}");
    assert_eq!(report["denied_leaks"], 0, "{report:#}");
    for key in ["refused", "reset", "timed_out", "other_error"] {
        assert_eq!(report[key], 0, "{key} in {report:#}");
    }
}
