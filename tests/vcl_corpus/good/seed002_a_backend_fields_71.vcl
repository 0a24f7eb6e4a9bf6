# Seed 002, first snippet, as varnishd 7.1 accepts it: `.port` is a string and `.ssl`
# (Varnish Cache Plus only) is dropped. The other fields the post lists are added.
vcl 4.0;

backend mybackend {
    # mandatory:
    .host = "127.0.0.1";
    #optional:
    .port = "8080";
    .host_header = "mybackend.example.com";
    .connect_timeout = 2s;
    .first_byte_timeout = 60s;
    .between_bytes_timeout = 60s;
    .max_connections = 100;
    .proxy_header = 1;
}
