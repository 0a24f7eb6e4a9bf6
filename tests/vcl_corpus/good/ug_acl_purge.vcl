# Users guide "ACLs" (vcl-example-acls.rst) and vcl(7)'s ACL section.
vcl 4.1;

backend default { .host = "127.0.0.1"; .port = "8080"; }

# Who is allowed to purge....
acl local {
    "localhost";
    "192.168.1.0"/24; /* and everyone on the local network */
    ! "192.168.1.23"; /* except for the dialin router */
}

acl localnetwork {
    "localhost";    # myself
    "192.0.2.0"/24; # and everyone on the local network
    ! "192.0.2.23"; # except for the dial-in router
}

# vcl(7) writes "firewall.example.com" / 24; an address keeps this loadable offline.
acl foo -pedantic +log {
    "192.0.2.17" / 24;
}

sub pipe_if_local {
    if (client.ip ~ localnetwork) {
        return (pipe);
    }
}

sub vcl_recv {
  if (req.method == "PURGE") {
    if (client.ip ~ local) {
       return(purge);
    } else {
       return(synth(403, "Access denied."));
    }
  }
  call pipe_if_local;
  if (client.ip ~ foo) {
    return (pass);
  }
}
