# Seed 004 (users guide "Backend servers"): the default backend, uncommented (`vcl 4.1;` added).
vcl 4.1;

# backend default {
#     .host = "127.0.0.1";
#     .port = "8080";
# }

backend default {
    .host = "127.0.0.1";
    .port = "8080";
}
