//! The fix for a failed connection to the broker, read off rumqttc's error text (its TLS, I/O and
//! CONNACK errors have no stable structure across versions; their wording does). The log then says
//! what to change instead of only that the connection failed.

/// What the operator should do about `error` (a connection error's text), if it is a known case.
pub fn fix_for(error: &str) -> Option<&'static str> {
    const FIXES: &[(&str, &str)] = &[
        ("UnknownIssuer", "set [mqtt] ca_file to the CA certificate that signed the broker's certificate"),
        ("not valid for name", "put in the url the host name the broker's certificate was issued for (or reissue it for this name)"),
        ("NotValidForName", "put in the url the host name the broker's certificate was issued for (or reissue it for this name)"),
        ("NotValidYet", "this device's clock is behind (a Pi has no battery clock: check `timedatectl` and NTP), or the certificate starts later"),
        ("Expired", "the broker's certificate has expired, or this device's clock is wrong (check `timedatectl`)"),
        ("BadUserNamePassword", "check [mqtt] username and password"),
        ("NotAuthorized", "the broker refused this user: check [mqtt] username, password and the broker's ACL"),
        ("CertificateRequired", "the broker wants a client certificate: set [mqtt] client_cert and client_key"),
        ("Connection refused", "nothing listens there: is the broker running, and is the url's port right (1883 plain, 8883 TLS)?"),
        ("failed to lookup address", "the broker's host name does not resolve: check the url, or use its IP address"),
    ];
    FIXES.iter().find(|(sign, _)| error.contains(sign)).map(|(_, fix)| *fix)
}

#[cfg(test)]
mod tests {
    use super::fix_for;

    #[test]
    fn known_failures_get_their_fix_and_others_none() {
        let cases = [
            ("TLS: I/O: invalid peer certificate: UnknownIssuer", "ca_file"),
            ("invalid peer certificate: certificate not valid for name \"127.0.0.1\"; certificate is only valid for DnsName(\"b\")", "host name"),
            ("invalid peer certificate: Expired", "expired"),
            ("Connection refused: BadUserNamePassword", "username and password"),
            ("I/O: Connection refused (os error 111)", "broker running"),
        ];
        for (error, fix) in cases {
            assert!(fix_for(error).is_some_and(|f| f.contains(fix)), "{error} -> {:?}", fix_for(error));
        }
        assert_eq!(fix_for("Mqtt state: Io error"), None);
    }
}
