# expect: 3:9: Expected .host or .path.
vcl 4.1;
backend default {
    .port = "80";
}
