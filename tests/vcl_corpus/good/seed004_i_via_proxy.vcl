# Seed 004: connecting through a PROXY2 TLS onloader with `.via` and `.path`. Note: `.via` and
# `.authority` are Varnish 7.3 fields (varnishd 7.1 rejects them as unknown fields); the syntax
# is plain fields.
vcl 4.1;

backend sslon {
  .path = "/path/to/sslon";
}

backend destination {
  .host = "my.https.service";
  .port = "443";
  .via = sslon;
  .authority = "my.https.service";
}
