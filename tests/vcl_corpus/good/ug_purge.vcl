# Users guide "Purging and banning" (purging.rst): PURGE with an ACL, BAN through std.ban(),
# and the ban-lurker friendly template.
vcl 4.1;

import std;

backend default { .host = "127.0.0.1"; .port = "8080"; }

acl purge {
	"localhost";
	"192.168.55.0"/24;
}

sub vcl_recv {
	# allow PURGE from localhost and 192.168.55...
	if (req.method == "PURGE") {
		if (!client.ip ~ purge) {
			return(synth(405,"Not allowed."));
		}
		return (purge);
	}
	if (req.method == "BAN") {
		# Same ACL check as above:
		if (!client.ip ~ purge) {
			return(synth(403, "Not allowed."));
		}
		if (std.ban("req.http.host == " + req.http.host +
		    " && req.url == " + req.url)) {
			return(synth(200, "Ban added"));
		} else {
			# return ban error in 400 response
			return(synth(400, std.ban_error()));
		}
	}
	if (req.method == "LURKERBAN") {
		if (!client.ip ~ purge) {
			return(synth(403, "Not allowed."));
		}
		# Assumes req.url is a regex. This might be a bit too simple
		if (std.ban("obj.http.url ~ " + req.url)) {
			return(synth(200, "Ban added"));
		} else {
			return(synth(400, std.ban_error()));
		}
	}
	if (req.http.X-Refresh) {
		set req.hash_always_miss = true;
	}
}

sub vcl_backend_response {
	set beresp.http.url = bereq.url;
}

sub vcl_deliver {
	unset resp.http.url; # Optional
}

sub vcl_purge {
	return (synth(200, "Purged"));
}
