# expect: 3:8: Unknown ACL flag 'fast'
vcl 4.1;
acl a +fast {
    "10.0.0.0"/8;
}
