# Strings, long strings, comments of every kind.
vcl 4.1;

backend default { .host = "127.0.0.1"; .port = "8080"; } // trailing comment

/*
 * A block comment with "quotes", {"braces"} and # hashes.
 */

sub vcl_synth {
    # a long string can hold "quotes" and newlines
    set resp.body = {"<!DOCTYPE html>
<p>"quoted"</p>
"} + resp.reason;
    set resp.http.a = """triple "quoted" string""";
    set resp.http.b = "no \escapes\ in VCL strings";
    set resp.http.c = "";
    set resp.http.d = "# not a comment";
    set resp.http.e = "// not a comment either /* nor this */";
    return (deliver);
}
