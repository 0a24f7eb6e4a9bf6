# Statements included inside a subroutine body.
if (client.ip ~ trusted) {
    set req.http.X-Trusted = "1";
}
set req.backend_hint = app1;
