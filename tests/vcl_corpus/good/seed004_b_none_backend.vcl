# Seed 004: `backend default none;` (`vcl 4.1;` added).
vcl 4.1;

backend default none;
