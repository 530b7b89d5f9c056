# submitd — one non-recursive GNU Makefile.
#   make            build everything into build/
#   make test       build and run every test (unit, integration); last line: N passed, N failed
#   make demo       end-to-end demonstration on loopback
#   make bench      load generator against a local daemon
#   make bench-scale  the same against PostgreSQL, HAProxy and two nodes
#   make test-clients  real mail clients (Thunderbird under Xvfb) against a local daemon;
#                   not part of make test; last line: N passed, N failed, N skipped
#   make SANITIZE=address,undefined test
.DEFAULT_GOAL := all

CC      ?= cc
PREFIX  ?= /usr/local
B       := build
O       := $(B)/obj

WARN    := -Wall -Wextra -Werror -Wformat=2 -Wshadow -Wpointer-arith -Wcast-qual \
           -Wstrict-prototypes -Wmissing-prototypes -Wvla -Wnull-dereference
# _FORTIFY_SOURCE needs optimisation; with `make CFLAGS=-O0` it would only warn (an
# error under -Werror), so it is left out there.
FORTIFY := $(if $(filter -O0,$(CFLAGS)),,-U_FORTIFY_SOURCE -D_FORTIFY_SOURCE=2)
HARDEN  := $(FORTIFY) -fstack-protector-strong -fstack-clash-protection -fPIE -fcf-protection
# Only the library folders are on the include path: a program's own headers sit next
# to its sources, so no program can include another program's internals by accident.
INC     := -Isubmitd/lib -Idb

# The project's own flags live in SD_CFLAGS/SD_LDFLAGS and are always used; CFLAGS,
# CPPFLAGS and LDFLAGS are the builder's (dpkg-buildflags, `make CFLAGS=-O0`) and come
# last, so they can change optimisation or add flags but never drop ours.
CFLAGS  ?= -O2 -g
SD_CFLAGS  := -std=c11 -D_GNU_SOURCE $(WARN) $(INC) -MMD -MP
SD_LDFLAGS := -pie -Wl,-z,relro,-z,now -Wl,-z,noexecstack -Wl,--as-needed

ifneq ($(SANITIZE),)
  SAN_CFLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -O1
  SD_LDFLAGS += -fsanitize=$(SANITIZE)
  HARDEN     := -fPIE
  B          := build-san
  O          := $(B)/obj
endif
SD_CFLAGS += $(HARDEN)
ALL_CFLAGS  = $(SD_CFLAGS) $(CPPFLAGS) $(CFLAGS) $(SAN_CFLAGS)
ALL_LDFLAGS = $(SD_LDFLAGS) $(LDFLAGS)

# The one version of every program (--version): the file VERSION.
VERSION     := $(shell cat VERSION)
VERSION_DEF := -DSUBMITD_VERSION='"$(VERSION)"'

SSL_LIBS    := -lssl -lcrypto
SQLITE_LIBS := -lsqlite3
# The programs that open the database link both backends: db_open picks one by the
# form of the name (an SQLite path, or a postgresql:// URI). Only db/postgres/ sees
# libpq's header.
PG_LIBS     := -lpq
PG_CFLAGS   := $(shell pkg-config --cflags libpq 2>/dev/null || echo -I/usr/include/postgresql)
DB_LIBS     := $(SQLITE_LIBS) $(PG_LIBS)
PAM_LIBS    := -lpam
THREAD_LIBS := -pthread
SYSTEMD_LIBS := -lsystemd

# --- sources -------------------------------------------------------------
# One source list per program folder (see each folder's main file for what it owns).
LIB_SRC    := $(wildcard submitd/lib/*.c)
DB_SRC     := $(filter-out db/cli_db.c,$(wildcard db/*.c)) $(wildcard db/sqlite/*.c) \
              $(O)/db/migrations.c $(wildcard db/postgres/*.c) $(O)/db/pg_migrations.c
CLI_DB_SRC := db/cli_db.c
MASTER_SRC := $(wildcard submitd/master/*.c)
SMTP_SRC   := $(wildcard submitd/smtp/*.c)
QUEUE_SRC  := $(wildcard submitd/queue/*.c)
AUTHZ_SRC  := $(wildcard authz/authzd/*.c)
ADMIN_SRC  := $(wildcard authz/admin/*.c) $(CLI_DB_SRC)
CA_SRC     := $(wildcard ca-tools/*.c) $(CLI_DB_SRC)
MIGRATIONS := $(sort $(wildcard db/sqlite/migrations/[0-9]*.sql))
PG_MIGRATIONS := $(sort $(wildcard db/postgres/migrations/[0-9]*.sql))

obj = $(patsubst %.c,$(O)/%.o,$(patsubst $(O)/%,%,$(1)))

LIB_OBJ := $(call obj,$(LIB_SRC))
DB_OBJ  := $(call obj,$(DB_SRC))

BINS    := $(B)/bin/submitd $(B)/bin/submit-ca $(B)/bin/submit-admin
LIBEXEC := $(B)/libexec/submitd/submitd-smtp $(B)/libexec/submitd/submitd-authz \
           $(B)/libexec/submitd/submitd-queue
TOOLS   := $(B)/bin/submitd-loadgen $(B)/bin/submitd-sink $(B)/bin/submitd-durable-floor \
           $(B)/bin/submitd-crossing-floor $(B)/bin/submitd-dialogue-floor

all: $(BINS) $(LIBEXEC) $(TOOLS)

$(O)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(VERSION_DEF) -c -o $@ $<

$(O)/submitd/master/master.o $(O)/authz/admin/submit-admin.o $(O)/ca-tools/submit-ca.o: VERSION

$(O)/db/migrations.o: $(O)/db/migrations.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(O)/db/pg_migrations.o: $(O)/db/pg_migrations.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(O)/db/postgres/%.o: db/postgres/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(PG_CFLAGS) -c -o $@ $<

# Migrations are embedded into every program that opens the database.
$(O)/db/migrations.c: $(MIGRATIONS) scripts/embed-sql.sh
	@mkdir -p $(dir $@)
	sh scripts/embed-sql.sh $(MIGRATIONS) > $@.tmp && mv $@.tmp $@

# The same schema versions for PostgreSQL (db/postgres/migrations).
$(O)/db/pg_migrations.c: $(PG_MIGRATIONS) scripts/embed-sql.sh
	@mkdir -p $(dir $@)
	sh scripts/embed-sql.sh -n db_pg_migrations $(PG_MIGRATIONS) > $@.tmp && mv $@.tmp $@

$(B)/lib.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# The master and the smtp process never link SQLite, libpq or PAM: the process that parses
# untrusted bytes cannot reach the database or PAM even if it is compromised.
$(B)/bin/submitd: $(call obj,$(MASTER_SRC)) $(B)/lib.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(SSL_LIBS) $(SYSTEMD_LIBS) $(THREAD_LIBS)

$(B)/libexec/submitd/submitd-smtp: $(call obj,$(SMTP_SRC)) $(B)/lib.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(SSL_LIBS) $(THREAD_LIBS)

$(B)/libexec/submitd/submitd-queue: $(call obj,$(QUEUE_SRC)) $(B)/lib.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(SSL_LIBS) $(THREAD_LIBS)

$(B)/libexec/submitd/submitd-authz: $(call obj,$(AUTHZ_SRC)) $(DB_OBJ) $(B)/lib.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(DB_LIBS) $(PAM_LIBS) $(SSL_LIBS)

$(B)/bin/submit-admin: $(call obj,$(ADMIN_SRC)) $(DB_OBJ) $(B)/lib.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(DB_LIBS) $(SSL_LIBS)

$(B)/bin/submit-ca: $(call obj,$(CA_SRC)) $(DB_OBJ) $(B)/lib.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(DB_LIBS) $(SSL_LIBS)

$(B)/bin/submitd-loadgen: $(call obj,tests/bench/loadgen.c) $(B)/lib.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(SSL_LIBS) $(THREAD_LIBS)

# The benchmark's upstream: a counting SMTP sink (make bench).
$(B)/bin/submitd-sink: $(call obj,tests/bench/sink.c) $(B)/lib.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^

# The file-system work DESIGN requires per message, alone: the floor under the CPU per
# message that make bench compares with.
$(B)/bin/submitd-durable-floor: $(call obj,tests/bench/durable_floor.c)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^

# One question and its answer between two processes, alone: the floor under what the
# process split of DESIGN section 2 costs per message (make bench).
$(B)/bin/submitd-crossing-floor: $(call obj,tests/bench/crossing_floor.c)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^

# A server that does only the STARTTLS, the handshake and the SMTP dialogue: the floor
# under what the TLS and SMTP of each shape cost (make bench).
$(B)/bin/submitd-dialogue-floor: $(call obj,tests/bench/dialogue_floor.c)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(SSL_LIBS)

# --- unit tests: one binary per tests/unit/test_*.c ----------------------
UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRC))
# Objects of the programs under test that unit tests may link (pure modules only).
UNIT_LINK := $(call obj,ca-tools/ca_util.c authz/authzd/cert_field.c submitd/queue/queue_content.c) $(DB_OBJ) $(B)/lib.a

$(B)/tests/%: $(O)/tests/unit/%.o $(UNIT_LINK)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(DB_LIBS) $(SSL_LIBS) $(THREAD_LIBS)

# The authz process's group commit and audit handlers (tests/unit/test_authz_batch.c).
AUTHZ_BATCH := $(call obj,$(addprefix authz/authzd/,authz_address.c authz_answer.c authz_audit.c \
                                                authz_grant.c))
$(B)/tests/test_authz_batch: $(O)/tests/unit/test_authz_batch.o $(AUTHZ_BATCH) $(UNIT_LINK)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(DB_LIBS) $(SSL_LIBS) $(THREAD_LIBS)

# The recorded SMTP dialogues (tests/golden) run against the session state machine
# alone: its objects without the socket side (smtp_io.c) or the worker loop.
SMTP_CORE := $(call obj,$(addprefix submitd/smtp/,smtp_session.c smtp_cmd.c smtp_sasl.c \
             smtp_data.c smtp_req.c smtp_answer.c smtp_limits.c))
$(B)/tests/test_golden: $(O)/tests/unit/test_golden.o $(SMTP_CORE) $(B)/lib.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(SSL_LIBS)

# The fuzz target over its saved corpus, as an ordinary test (any compiler).
FUZZ_OBJ := $(call obj,tests/fuzz/fuzz_parsers.c tests/fuzz/driver.c)
$(B)/tests/test_fuzz_corpus: $(FUZZ_OBJ) $(B)/lib.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(SSL_LIBS)

# A compromised smtp process for the integration tests (not itself a test).
$(B)/tests/hostile-smtp: $(call obj,tests/integration/hostile_smtp.c) $(B)/lib.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(SSL_LIBS)

# The IPC codec target over its own corpus: every decoder on hostile bytes.
$(O)/tests/fuzz/driver_ipc.o: tests/fuzz/driver.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DCORPUS='"tests/fuzz/corpus-ipc"' -c -o $@ $<

$(B)/tests/test_fuzz_ipc_corpus: $(call obj,tests/fuzz/fuzz_ipc.c) $(O)/tests/fuzz/driver_ipc.o                                  $(B)/lib.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(SSL_LIBS)

# The certificate field target over its own corpus: hostile certificates for rule maps.
$(O)/tests/fuzz/driver_cert.o: tests/fuzz/driver.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DCORPUS='"tests/fuzz/corpus-cert"' -c -o $@ $<

$(B)/tests/test_fuzz_cert_corpus: $(call obj,tests/fuzz/fuzz_cert_field.c authz/authzd/cert_field.c) \
                                  $(O)/tests/fuzz/driver_cert.o
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(SSL_LIBS)

# The PROXY header target over its own corpus: the first bytes of a connection.
$(O)/tests/fuzz/driver_proxy.o: tests/fuzz/driver.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DCORPUS='"tests/fuzz/corpus-proxy"' -c -o $@ $<

$(B)/tests/test_fuzz_proxy_corpus: $(call obj,tests/fuzz/fuzz_proxy.c) $(O)/tests/fuzz/driver_proxy.o \
                                   $(B)/lib.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(SSL_LIBS)

unit: $(UNIT_BINS) $(B)/tests/test_fuzz_corpus $(B)/tests/test_fuzz_ipc_corpus \
      $(B)/tests/test_fuzz_cert_corpus $(B)/tests/test_fuzz_proxy_corpus $(B)/tests/hostile-smtp

# make fuzz [FUZZ_SECONDS=60]: libFuzzer with ASan/UBSan (needs clang), each target
# for FUZZ_SECONDS; new inputs go to build-fuzz/corpus*, the seeds in tests/fuzz/
# corpus (parsers, DATA path), tests/fuzz/corpus-ipc (IPC codecs), tests/fuzz/corpus-cert
# (certificate fields of rule maps) and tests/fuzz/corpus-proxy (PROXY headers) stay as
# they are.
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS := -g -O1 -std=c11 -D_GNU_SOURCE -Isubmitd/lib -Isubmitd/smtp \
               -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
fuzz:
	@command -v clang >/dev/null || { echo "make fuzz: clang is required (apt-get install clang libclang-rt-14-dev)"; exit 1; }
	@mkdir -p build-fuzz/corpus
	clang $(FUZZ_CFLAGS) -o build-fuzz/fuzz_parsers tests/fuzz/fuzz_parsers.c submitd/lib/smtp_parse.c \
	    submitd/lib/util.c submitd/lib/spool.c submitd/lib/dn.c -lcrypto
	build-fuzz/fuzz_parsers -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	    build-fuzz/corpus tests/fuzz/corpus
	@mkdir -p build-fuzz/corpus-ipc
	clang $(FUZZ_CFLAGS) -o build-fuzz/fuzz_ipc tests/fuzz/fuzz_ipc.c submitd/lib/ipc_codec.c \
	    submitd/lib/ipc.c
	build-fuzz/fuzz_ipc -max_total_time=$(FUZZ_SECONDS) -max_len=8192 \
	    build-fuzz/corpus-ipc tests/fuzz/corpus-ipc
	@mkdir -p build-fuzz/corpus-cert
	clang $(FUZZ_CFLAGS) -o build-fuzz/fuzz_cert_field tests/fuzz/fuzz_cert_field.c \
	    authz/authzd/cert_field.c -lcrypto
	build-fuzz/fuzz_cert_field -max_total_time=$(FUZZ_SECONDS) -max_len=8192 \
	    build-fuzz/corpus-cert tests/fuzz/corpus-cert
	@mkdir -p build-fuzz/corpus-proxy
	clang $(FUZZ_CFLAGS) -o build-fuzz/fuzz_proxy tests/fuzz/fuzz_proxy.c submitd/lib/proxy_proto.c
	build-fuzz/fuzz_proxy -max_total_time=$(FUZZ_SECONDS) -max_len=4200 \
	    build-fuzz/corpus-proxy tests/fuzz/corpus-proxy

# make analyze: GCC's static analyzer (-fanalyzer) over every source of the programs
# and the load generator, with the build's own flags; a finding is an error (-Werror).
# Objects go to a scratch folder ($(O)/analyze) and are never linked; only sources
# that changed since the last clean run are analysed again.
ANALYZE_SRC := $(sort $(LIB_SRC) $(DB_SRC) $(MASTER_SRC) $(SMTP_SRC) $(QUEUE_SRC) $(AUTHZ_SRC) \
               $(ADMIN_SRC) $(CA_SRC) tests/bench/loadgen.c tests/bench/sink.c \
               tests/bench/durable_floor.c tests/bench/crossing_floor.c \
               tests/bench/dialogue_floor.c)
ANALYZE_OBJ := $(patsubst %.c,$(O)/analyze/%.o,$(patsubst $(O)/%,%,$(ANALYZE_SRC)))

$(O)/analyze/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(VERSION_DEF) -fanalyzer -c -o $@ $<

$(O)/analyze/db/postgres/%.o: db/postgres/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(PG_CFLAGS) -fanalyzer -c -o $@ $<

$(O)/analyze/db/%.o: $(O)/db/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fanalyzer -c -o $@ $<

analyze: $(ANALYZE_OBJ)
	@echo "analyze: $(words $(ANALYZE_OBJ)) sources, no findings"

# --- top-level jobs --------------------------------------------------------
deps:
	@sh scripts/install-deps.sh

test: deps
	@$(MAKE) --no-print-directory all unit
	@sh scripts/run-tests.sh $(B)

demo: deps
	@$(MAKE) --no-print-directory all
	@sh scripts/demo.sh $(B)

bench: deps
	@$(MAKE) --no-print-directory all
	@sh scripts/bench.sh $(B)

# SQLite against PostgreSQL, one node direct, behind HAProxy, and two nodes behind it
# (docs/scale-out.md, "Measured figures").
bench-scale: deps
	@$(MAKE) --no-print-directory all
	@sh scripts/bench-scale.sh $(B)

# Real mail clients against a real daemon (tests/clients). Not part of `make test`:
# it installs a desktop mail client and an X server (scripts/install-client-deps.sh).
client-deps:
	@sh scripts/install-client-deps.sh

test-clients: deps client-deps
	@$(MAKE) --no-print-directory all
	@sh scripts/run-client-tests.sh $(B)

# make install [PREFIX=/usr/local] [DESTDIR=...]: the layout of the Debian package
# under PREFIX (sbin, libexec/submitd, share/man), the configuration, PAM service,
# units and fail2ban filter under DESTDIR's /etc and /lib. An existing submitd.conf or
# PAM service file is kept. The units name PREFIX/sbin. The state directories are made root's 0700; the
# users, and the spool's owner, are the package's postinst's job
# (debian/submitd.postinst); README says what to run by hand after a source install.
SBINDIR    := $(PREFIX)/sbin
LIBEXECDIR := $(PREFIX)/libexec/submitd
MANDIR     := $(PREFIX)/share/man
DOCDIR     := $(PREFIX)/share/doc/submitd
# The package's units go to /lib; a local install's to /etc, where admins' units live.
UNITDIR    ?= $(if $(filter /usr,$(PREFIX)),/lib/systemd/system,/etc/systemd/system)
UNITS      := conf/submitd.service conf/submitd-crl.service conf/submitd-crl.timer \
              conf/submitd-stats.service conf/submitd-stats.timer

install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(LIBEXECDIR) $(DESTDIR)$(MANDIR)/man5 \
	           $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)/etc/submitd $(DESTDIR)/etc/pam.d \
	           $(DESTDIR)$(UNITDIR) $(DESTDIR)/etc/fail2ban/filter.d $(DESTDIR)$(DOCDIR)/examples
	install -d -m 0700 $(DESTDIR)/var/lib/submitd $(DESTDIR)/var/spool/submitd
	install -m 0755 $(BINS) $(DESTDIR)$(SBINDIR)/
	install -m 0755 $(LIBEXEC) $(DESTDIR)$(LIBEXECDIR)/
	install -m 0644 man/*.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 man/*.8 $(DESTDIR)$(MANDIR)/man8/
	test -e $(DESTDIR)/etc/submitd/submitd.conf || \
	    install -m 0640 conf/submitd.conf $(DESTDIR)/etc/submitd/submitd.conf
	test -e $(DESTDIR)/etc/pam.d/submitd || \
	    install -m 0644 conf/pam.d/submitd $(DESTDIR)/etc/pam.d/submitd
	for u in $(UNITS); do \
	    sed 's|/usr/sbin/|$(SBINDIR)/|g' $$u > $(DESTDIR)$(UNITDIR)/$${u##*/} && \
	    chmod 0644 $(DESTDIR)$(UNITDIR)/$${u##*/} || exit 1; \
	done
	install -m 0644 conf/fail2ban/filter.d/submitd.conf $(DESTDIR)/etc/fail2ban/filter.d/
	install -m 0644 conf/fail2ban/jail.d/submitd.local.example $(DESTDIR)$(DOCDIR)/examples/

# make deb: build/submitd_$(VERSION)_amd64.deb from debian/ with dpkg-buildpackage.
# It builds in a copy of the tree (build/deb/), so the working tree's build/ and
# debian/ stay as they are. debian/changelog must name VERSION.
DEB_VERSION = $(shell dpkg-parsechangelog -l debian/changelog -S Version)
DEB_ARCH    = $(shell dpkg-architecture -qDEB_HOST_ARCH)
deb:
	@command -v dh >/dev/null && command -v dpkg-buildpackage >/dev/null || { echo "make deb: debhelper and dpkg-dev are required (apt-get install debhelper dpkg-dev fakeroot)" >&2; exit 1; }
	@test "$(DEB_VERSION)" = "$(VERSION)" || { echo "make deb: debian/changelog is at $(DEB_VERSION), VERSION is $(VERSION): add an entry (dch -v $(VERSION))" >&2; exit 1; }
	rm -rf $(B)/deb && mkdir -p $(B)/deb/submitd-$(VERSION)
	tar -cf - --exclude=./build --exclude=./build-san --exclude=./build-fuzz --exclude=./.git . | \
	    tar -xf - -C $(B)/deb/submitd-$(VERSION)
	cd $(B)/deb/submitd-$(VERSION) && dpkg-buildpackage -b -us -uc
	cp $(B)/deb/submitd_$(VERSION)_$(DEB_ARCH).deb $(B)/
	@echo "built $(B)/submitd_$(VERSION)_$(DEB_ARCH).deb"

# Every build directory: build/ (make; demo and deb work inside it too), build-san/
# (SANITIZE=...) and build-fuzz/ (make fuzz); make analyze writes under build*/obj.
clean:
	rm -rf build build-san build-fuzz

.PHONY: all unit deps client-deps test test-clients demo bench bench-scale fuzz analyze install deb clean

-include $(shell find $(O) -name '*.d' 2>/dev/null)
