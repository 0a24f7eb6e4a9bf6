# include at the top level, with +glob, inside a subroutine and inside an ACL. Paths are
# relative to the including file's directory (varnishd looks them up in vcl_path instead).
vcl 4.1;

include "inc/backends.inc.vcl";
include +glob "inc/glob/*.inc.vcl";

acl office {
    "127.0.0.1";
    include "inc/office.acl.inc.vcl";
}

sub vcl_recv {
    include "inc/recv_body.inc.vcl";
    if (req.url ~ "^/two/") {
        set req.backend_hint = app2;
    }
    if (client.ip ~ office) {
        call pick_app3;
    }
}
