//! Issue 10, prove-it 1 and 2: a corpus of everyday command lines — coreutils, bash scripts
//! with `$(…)`, backticks, `>/dev/null`, `> file`, `2>&1`, pipelines, `exec` redirections,
//! background jobs and `-x` tracing, pyenv-shaped shims that `exec` Python, Python (logging,
//! subprocess, multiprocessing, writes larger than the ring), Perl, awk, sed, make, node, and
//! a `-O2` C program whose `putc_unlocked` & co. are inlined — each run three times against
//! the real `liblogtap.so`:
//!
//! 1. untapped (no `LD_PRELOAD`): what the program does on its own;
//! 2. tapped (`LLT_TAP_INTO=3`): the stdout records joined in order are byte for byte what
//!    reached the real stdout in that run, the stderr records what reached the real stderr —
//!    nothing more (no command substitution, `/dev/null`, file or inner pipeline stage), nothing
//!    less (inlined stdio macros included); and the program's output, files and exit status
//!    are the untapped run's;
//! 3. tapped with `LLT_SUPPRESS_STDOUT=true LLT_SUPPRESS_STDERR=true`: the records are the
//!    untapped run's stdout and stderr, the real stdout and stderr receive nothing, every file
//!    the command wrote is the untapped run's, and the exit status is the same.
//!
//! Each case is a module with one test per way of capturing its output (`ls_l::pipes`, …):
//! `pipes` (two pipes), `files` (two regular files), `merged` (one pipe for both) and `tty`
//! (one pseudo-terminal for both, as `logtap run` in a terminal; the pty does no output
//! processing, so what the master reads is what was written). With one stream for both
//! (`merged`, `tty`), which stream a byte is labelled with is not checked, and neither is the
//! order of one process's stdout records against its stderr records (stdio bytes may be
//! tapped when the FILE accepts them, before it writes them): the combined output must be an
//! interleaving of the records of every (pid, stream), each in its own order, using every
//! byte once. The same holds for cases whose processes write at the same time
//! (`Case::concurrent`).
//!
//! Records are put in order by time stamp, then pid, then seq: the processes of a script run
//! one after another, and within a process `seq` follows the writes. The ring transport (the
//! default) is used throughout. Every run is bounded by [`RUN_LIMIT`].
//!
//! All the problems of one case are gathered and reported together, each with the first
//! differing offset and a window of escaped bytes around it.

mod fidelity_support;
mod interceptor_support;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

use fidelity_support::{byte_diff, excerpt, python3_shim_on_path, write_pyenv_shim};
use interceptor_support::{STDERR, STDOUT, Setup, Transport, compile, python};
use logtap_tests::artifacts::TempDir;
use logtap_tests::tap_receiver::{Collected, Record};

/// Longest a single run may take before it is killed and reported.
const RUN_LIMIT: Duration = Duration::from_secs(20);
/// Longest the receiver is waited for after a run.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);
/// No new record for this long after the program exited, with all expected bytes in: done.
const QUIET_WHEN_COMPLETE: Duration = Duration::from_millis(300);
/// No new record for this long after the program exited, bytes missing: they will not come.
const QUIET_WHEN_SHORT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capture {
    /// stdout and stderr into two pipes read by the test.
    Pipes,
    /// stdout and stderr into two regular files (outside the working directory).
    Files,
    /// stdout and stderr into one pipe.
    Merged,
    /// stdout and stderr on one pseudo-terminal (output post-processing off, so the bytes
    /// read from the master are the bytes written), as `logtap run` in a terminal.
    Tty,
}

impl Capture {
    fn named(name: &str) -> Capture {
        match name {
            "pipes" => Capture::Pipes,
            "files" => Capture::Files,
            "merged" => Capture::Merged,
            "tty" => Capture::Tty,
            other => panic!("no capture mode {other}"),
        }
    }

    /// stdout and stderr are one stream.
    fn one_stream(self) -> bool {
        matches!(self, Capture::Merged | Capture::Tty)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Untapped,
    Tapped,
    Suppressed,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Untapped => "untapped",
            Mode::Tapped => "tapped",
            Mode::Suppressed => "suppressed",
        }
    }
}

/// One command line of the corpus.
struct Case {
    argv: Vec<OsString>,
    env: Vec<(String, String)>,
    /// Exit status of the untapped run (checks the case itself, not the library).
    want_status: i32,
    /// Whether the untapped run writes to stderr (checks the case itself).
    writes_stderr: bool,
    /// Processes write to the same stream at the same time: their order varies from run to
    /// run, and the records are compared as an interleaving of each process's records.
    concurrent: bool,
}

/// What one run gave.
struct RunResult {
    mode: Mode,
    /// None: killed after [`RUN_LIMIT`].
    status: Option<ExitStatus>,
    /// Pipes/Files: the real stdout; Merged: the one combined stream.
    stdout: Vec<u8>,
    /// Pipes/Files: the real stderr; Merged: empty.
    stderr: Vec<u8>,
    /// Every file under the working directory after the run: relative path → bytes.
    files: BTreeMap<String, Vec<u8>>,
    /// The receiver's records (tapped runs).
    collected: Option<Collected>,
}

/// A case's temporary tree: `work/` is the working directory of every run (recreated with the
/// same fixture before each, so paths are identical); `bin/` holds scripts and programs;
/// `cap/` the capture files.
struct Bench {
    root: TempDir,
}

impl Bench {
    fn work(&self) -> PathBuf {
        self.root.path().join("work")
    }
    fn bin(&self) -> PathBuf {
        self.root.path().join("bin")
    }
    fn cap(&self) -> PathBuf {
        self.root.path().join("cap")
    }

    /// Recreates `work/` with the fixture: `data/` with three small text files of fixed
    /// contents, mode and modification time (so `ls -l data` is the same in every run).
    fn reset_work(&self) {
        let work = self.work();
        let _ = std::fs::remove_dir_all(&work);
        let data = work.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_622_548_800); // 2021-06-01
        for (name, text) in [
            (
                "words.txt",
                "banana\napple\ncherry\nbanana\ndate\nelderberry\nfig\napple\ngrape\n",
            ),
            ("numbers.txt", "3\n1\n2\n10\n"),
            ("notes.md", "# notes\nsome text with  two spaces\ttab\n"),
        ] {
            let p = data.join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            let f = std::fs::File::options().write(true).open(&p).unwrap();
            f.set_modified(mtime).unwrap();
        }
    }

    fn script(&self, name: &str, text: &str) -> PathBuf {
        std::fs::create_dir_all(self.bin()).unwrap();
        let p = self.bin().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }
}

fn os(v: &[&str]) -> Vec<OsString> {
    v.iter().map(OsString::from).collect()
}

fn simple(argv: &[&str], want_status: i32, writes_stderr: bool) -> Case {
    Case {
        argv: os(argv),
        env: Vec::new(),
        want_status,
        writes_stderr,
        concurrent: false,
    }
}

fn bash(bench: &Bench, name: &str, body: &str, want_status: i32) -> Case {
    let py = python();
    let text = format!(
        "#!/bin/bash\n{}",
        body.replace("@PY@", &py.display().to_string())
    );
    let path = bench.script(&format!("{name}.sh"), &text);
    Case {
        argv: vec!["bash".into(), path.into()],
        env: Vec::new(),
        want_status,
        writes_stderr: true,
        concurrent: false,
    }
}

const PY_LOGGING: &str = r#"
import logging, sys
logging.basicConfig(stream=sys.stderr, level=logging.DEBUG,
                    format="%(levelname)s %(name)s: %(message)s")
log = logging.getLogger("corpus")
for i in range(5):
    print(f"stdout line {i}")
    log.info("info line %d", i)
log.warning("warning with non-ASCII: \u00e9\u00e8 \u65e5\u672c")
logging.getLogger().error("root error")
print("non-ASCII: \u00e9 \u00fc \u65e5\u672c")
sys.stdout.write("no newline at the end")
sys.stderr.write("stderr without newline")
"#;

const PY_SMALL: &str = r#"
import logging, sys
print("python via the shim:", sys.argv[1:])
logging.warning("a warning via the shim")
print("done")
"#;

const PY_SUBPROCESS: &str = r#"
import os, subprocess, sys
print("before", flush=True)
out = subprocess.check_output(["date", "-u", "-d", "@0"])
print("captured:", out.decode().strip(), flush=True)
subprocess.run(["echo", "child to the real stdout"])
subprocess.run(["ls", "no-such-file"], stderr=subprocess.DEVNULL)
r = subprocess.run("ls data | head -n 1", shell=True, capture_output=True, text=True)
print("shell captured:", r.stdout.strip(), flush=True)
subprocess.run("echo shell-out; echo shell-err >&2", shell=True)
with open("py-child.txt", "w") as f:
    subprocess.run(["uname", "-s"], stdout=f)
print("after", flush=True)
sys.stderr.write("stderr after\n")
sys.stderr.flush()
os.system("echo from os.system")
print("end")
"#;

const PY_MULTIPROCESSING: &str = r#"
import logging, multiprocessing, sys, threading

def work(i):
    print("child", i, "says hello", flush=True)
    logging.warning("child %d warns", i)

if __name__ == "__main__":
    multiprocessing.set_start_method("fork")
    print("parent starts", flush=True)
    for i in range(3):
        p = multiprocessing.Process(target=work, args=(i,))
        p.start()
        p.join()
    for i in range(3):
        t = threading.Thread(target=lambda i=i: print("thread", i, flush=True))
        t.start()
        t.join()
    print("parent ends")
"#;

/// Single writes larger than a ring record (64 KiB) and than the default ring (1 MiB).
const PY_BIG_WRITES: &str = r#"
import sys
out = sys.stdout.buffer
out.write(b"".join(b"%07d\n" % i for i in range(20000)))
out.flush()
out.write(b"".join(b"%07d line of the second write\n" % i for i in range(100000)))
out.flush()
sys.stderr.buffer.write(b"e" * 200000 + b"\n")
sys.stderr.flush()
print("end")
"#;

const NODE: &str = r#"
console.log("node stdout", 1);
console.error("node stderr");
process.stdout.write("no newline ");
process.stdout.write("then newline\n");
const cp = require("child_process");
const out = cp.execSync("date -u -d @0").toString().trim();
console.log("captured:", out);
cp.execSync("echo inherited", { stdio: "inherit" });
require("fs").writeFileSync("node.txt", "to a file\n");
console.log("\u00e9 \u65e5\u672c");
"#;

/// Builds the corpus case `name` in `bench` (None: not available on this machine).
fn build_case(name: &str, bench: &Bench) -> Option<Case> {
    let case = match name {
        // coreutils, run directly: the first tapped process is the program itself.
        "ls_l" => simple(&["ls", "-l", "data"], 0, false),
        "ls_missing" => simple(&["ls", "-l", "data", "no-such-file"], 2, true),
        "echo" => simple(&["/bin/echo", "hi", "there"], 0, false),
        "printf" => simple(&["/usr/bin/printf", "plain line\\n"], 0, false),
        "date" => simple(&["date", "-u", "-d", "@0"], 0, false),
        "wc" => simple(&["wc", "data/words.txt", "data/numbers.txt"], 0, false),
        "cat" => simple(&["cat", "data/words.txt", "data/notes.md"], 0, false),
        "sort" => simple(&["sort", "data/words.txt"], 0, false),
        "head" => simple(
            &["head", "-n", "3", "data/words.txt", "data/numbers.txt"],
            0,
            false,
        ),
        "id" => simple(&["id"], 0, false),
        "uname" => simple(&["uname", "-a"], 0, false),
        "awk" => simple(
            &[
                "awk",
                "{ n += length($0); print NR \": \" toupper($0) } \
                 NR % 3 == 0 { print \"awk stderr at \" NR > \"/dev/stderr\" } \
                 END { printf \"total %d chars\\n\", n }",
                "data/words.txt",
            ],
            0,
            true,
        ),
        "sed" => simple(
            &[
                "sed",
                "-n",
                "-e",
                "s/an/AN/gp",
                "-e",
                "$=",
                "data/words.txt",
                "no-such-file",
                "data/numbers.txt",
            ],
            2,
            true,
        ),
        "perl" => simple(
            &[
                "perl",
                "-e",
                r#"use strict; use warnings;
print "perl stdout 1\n";
print STDERR "perl stderr 1\n";
printf "%s %05d\n", "formatted", 42;
system("echo", "from system()");
print STDOUT "after system\n";
warn "perl warn\n";
print "no newline at the end";
exit 0;"#,
            ],
            0,
            true,
        ),
        "python_logging" => Case {
            argv: vec![python().into(), "-c".into(), PY_LOGGING.into()],
            env: Vec::new(),
            want_status: 0,
            writes_stderr: true,
            concurrent: false,
        },
        "c_putc_full" | "c_putc_line" | "c_putc_none" | "c_redirect" => {
            std::fs::create_dir_all(bench.bin()).unwrap();
            let exe = compile("putc_fidelity", &bench.bin());
            // The case is only meaningful if the compiler inlined the character macros.
            let nm = Command::new("nm").arg("-D").arg(&exe).output().unwrap();
            let syms = String::from_utf8_lossy(&nm.stdout);
            for f in ["putc_unlocked", "putchar_unlocked", "fputc_unlocked"] {
                assert!(!syms.contains(f), "{f} was not inlined by gcc -O2:\n{syms}");
            }
            assert!(syms.contains("__overflow"), "{syms}");
            let mode = name.trim_start_matches("c_putc_").trim_start_matches("c_");
            Case {
                argv: vec![exe.into(), mode.into()],
                env: Vec::new(),
                want_status: 0,
                writes_stderr: true,
                concurrent: false,
            }
        }
        // Bash scripts: the first tapped process is bash; every command it runs inherits the
        // stream identities.
        "bash_substitution" => bash(
            bench,
            name,
            r#"set -e
x=$(echo captured)
y=`date -u -d @0 +%Y`
n=$(ls data | wc -l)
z=$(ls no-such-dir 2>&1 || true)
w=`printf '%s' "$(basename "$(readlink -f data/words.txt)")"`
h=$(head -n 2 data/words.txt; echo "stderr from inside a substitution" >&2)
echo "x=$x y=$y n=$n"
echo "z=$z"
echo "w=$w"
echo "h=$h"
echo "err: $x" >&2
"#,
            0,
        ),
        "bash_devnull" => bash(
            bench,
            name,
            r#"echo hidden >/dev/null
ls no-such-dir 2>/dev/null || true
ls -l data >/dev/null
/bin/echo hidden-too >/dev/null 2>&1
echo shown
echo err-shown >&2
cat data/missing 2>/dev/null || echo "cat failed quietly"
{ echo grouped-hidden; echo grouped-err-hidden >&2; } >/dev/null 2>&1
@PY@ -c 'import sys; print("py hidden"); sys.stderr.write("py err hidden\n")' >/dev/null 2>&1
exec 3>/dev/null
echo via-fd3 >&3
exec 3>&-
date -u -d @0 2>/dev/null
"#,
            0,
        ),
        "bash_to_file" => bash(
            bench,
            name,
            r#"echo important-data > out.txt
date -u -d @0 > date.txt
ls -l data > ls.txt 2> ls.err
ls data no-such-file >> ls.txt 2>> ls.err || true
printf 'a\nb\n' >> out.txt
/bin/echo from-echo >> out.txt
@PY@ -c 'import sys; print("py to file"); sys.stderr.write("py err to file\n")' > py.txt 2> py.err
sort data/words.txt | uniq > sorted.txt
echo teed | tee tee.txt
uname -a > uname.txt
cat out.txt
wc -l < out.txt
echo done >&2
"#,
            0,
        ),
        "bash_2to1" => bash(
            bench,
            name,
            r#"ls data no-such-file 2>&1 || true
echo to-stderr 1>&2
ls no-such-file-2 1>&2 || true
/bin/echo echo-to-stderr >&2
sh -c 'echo inner-err >&2; echo inner-out' 2>&1
@PY@ -c 'import sys; sys.stderr.write("py stderr into stdout\n")' 2>&1
{ echo grp-out; echo grp-err >&2; } 2>&1 | cat
exit 3
"#,
            3,
        ),
        "bash_pipeline" => bash(
            bench,
            name,
            r#"ls data | head -n 2
sort data/words.txt | uniq -c | sort -rn | head -n 3
cat data/words.txt | wc -l
ls -l data | awk '{print $1}' | sort | uniq -c
ls no-such-file 2>&1 | sed 's/^/piped: /'
seq 1 1000 | tail -n 2
echo pipeline-done >&2
"#,
            0,
        ),
        "bash_sigpipe" => bash(
            bench,
            name,
            r#"yes line | head -n 5
seq 1 100000 | head -n 1
echo sigpipe-done >&2
"#,
            0,
        ),
        // The issue's own examples, in dash.
        "sh_issue_examples" => Case {
            argv: os(&[
                "/bin/sh",
                "-c",
                r#"echo important-data > out.txt
x=$(echo captured)
echo "x=$x"
echo x >/dev/null
y=$(date -u -d @0)
echo "y=$y"
ls data | head -n 1
date -u -d @0 > f
cat out.txt f
echo sh-done >&2"#,
            ]),
            env: Vec::new(),
            want_status: 0,
            writes_stderr: true,
            concurrent: false,
        },
        "pyenv_shim" => {
            let shim = write_pyenv_shim(&bench.bin(), "python3", &python());
            Case {
                argv: vec![shim.into(), "-c".into(), PY_SMALL.into(), "arg1".into()],
                env: Vec::new(),
                want_status: 0,
                writes_stderr: true,
                concurrent: false,
            }
        }
        "pyenv_real_shim" => {
            let Some(shim) = python3_shim_on_path() else {
                eprintln!("python3 on PATH is not a shim script: nothing to check here");
                return None;
            };
            Case {
                argv: vec![shim.into(), "-c".into(), PY_SMALL.into(), "arg1".into()],
                env: Vec::new(),
                want_status: 0,
                writes_stderr: true,
                concurrent: false,
            }
        }
        "bash_exec_redirect" => bash(
            bench,
            name,
            r#"exec 3>&1 4>&2
exec >log.txt 2>&1
echo to-log
ls no-such-file || true
date -u -d @0
exec 1>&3 2>&4 3>&- 4>&-
echo back-on-stdout
echo back-on-stderr >&2
cat log.txt
"#,
            0,
        ),
        // bash opens /dev/stdout and /dev/stderr (a new description of the same pipe or
        // terminal) and moves it onto fd 1/2 of the command. (With regular files the open
        // would truncate the capture file: no files capture for this case.)
        "bash_dev_stdout" => bash(
            bench,
            name,
            r#"echo to-dev-stdout >/dev/stdout
echo to-dev-stderr >/dev/stderr
ls no-such-file 2>/dev/stdout || true
cat data/numbers.txt >/dev/stderr
echo done
"#,
            0,
        ),
        "bash_background" => bash(
            bench,
            name,
            r#"(sleep 0.2; echo late-from-background) &
echo foreground
wait
echo after-wait
{ echo to-a-file-in-the-background; } > bg.txt &
wait
cat bg.txt
echo bg-done >&2
"#,
            0,
        ),
        "bash_procsub_heredoc" => bash(
            bench,
            name,
            r#"cat <<EOF
heredoc line 1
heredoc line 2 with \$ and $((6 * 7))
EOF
cat <<< "here-string"
echo via-procsub > >(sed 's/^/procsub: /')
wait $!
diff <(sort data/words.txt) <(sort -u data/words.txt) || true
while read -r w; do echo "read: $w"; done < data/numbers.txt
mapfile -t arr < <(head -n 2 data/words.txt)
echo "${arr[@]}"
echo procsub-done >&2
"#,
            0,
        ),
        "bash_xargs_find" => bash(
            bench,
            name,
            r#"printf 'a\nb\n' | xargs -n1 echo item
find data -name '*.txt' | sort | xargs wc -c
find data -name 'n*' -printf '%f %s\n' | sort
find data -name '*.md' -exec cat {} +
find no-such-dir 2>&1 | sed 's/^/find says: /'
find no-such-dir-2 || true
"#,
            0,
        ),
        "coreutils_misc" => bash(
            bench,
            name,
            r#"tr a-z A-Z < data/words.txt
cut -c1-3 data/words.txt | paste -sd, -
paste data/numbers.txt data/numbers.txt
tac data/numbers.txt
nl data/words.txt
od -c data/numbers.txt
base64 data/notes.md
md5sum data/words.txt data/numbers.txt
sha256sum data/notes.md
seq -s, 1 10
expr 6 \* 7
basename /a/b/c.txt .txt
dirname /a/b/c.txt
fold -w 5 data/notes.md
numfmt --to=iec 1048576
factor 1234567
sort -n data/numbers.txt | uniq
grep -n an data/words.txt
grep -c a data/words.txt
diff data/words.txt data/numbers.txt || true
cmp data/words.txt data/numbers.txt || true
column -t data/notes.md
comm -12 <(sort data/words.txt) <(sort -u data/words.txt)
printf '%s=%d\n' a 1 b 2
false || echo "false failed"
grep -q banana data/words.txt && echo "grep -q found it"
cat no-such-file || true
"#,
            0,
        ),
        "bash_file_tools" => bash(
            bench,
            name,
            r#"cp data/words.txt copy.txt
sed -i 's/an/AN/g' copy.txt
gzip -nc data/words.txt > words.gz
gzip -dc words.gz > words.back
tar cf data.tar data/words.txt data/numbers.txt
mkdir -p sub && tar xf data.tar -C sub
sort -o sorted.txt data/words.txt
tee -a log.txt < data/numbers.txt > /dev/null
echo line | tee -a log.txt
split -l 3 data/words.txt part.
install -m 644 data/notes.md notes.copy
awk '{ print > "awk-out.txt" }' data/numbers.txt
ls -l copy.txt words.back sorted.txt | awk '{print $5, $9}'
cat log.txt
echo done >&2
"#,
            0,
        ),
        "stdbuf" => bash(
            bench,
            name,
            r#"stdbuf -oL grep an data/words.txt
stdbuf -o0 tr a-z A-Z < data/numbers.txt
stdbuf -oL cat data/notes.md | stdbuf -o0 sed 's/^/> /'
stdbuf -eL ls no-such-file || true
"#,
            0,
        ),
        "make" => {
            let mk = bench.script(
                "Makefile",
                "GREETING := $(shell echo hello-from-shell)\n\
                 FILES := $(sort $(wildcard data/*.txt))\n\
                 all: stamp\n\
                 \t@echo \"greeting: $(GREETING)\"\n\
                 \techo visible-command\n\
                 \t@ls data | head -n 2\n\
                 \t@echo to-stderr >&2\n\
                 \t@date -u -d @0 > made.txt\n\
                 \t-@ls no-such-file\n\
                 \t@echo \"files: $(FILES)\"\n\
                 stamp:\n\
                 \t@printf 'stamped\\n' > stamp\n",
            );
            let mut c = simple(&["make", "--no-print-directory", "-f"], 0, true);
            c.argv.push(mk.into());
            c
        }
        "gzip_binary_stdout" => simple(&["gzip", "-nc", "data/words.txt"], 0, false),
        "tar_to_stdout" => simple(
            &["tar", "cf", "-", "data/words.txt", "data/numbers.txt"],
            0,
            false,
        ),
        "seq_big" => simple(&["seq", "1", "300000"], 0, false),
        "python_subprocess" => Case {
            argv: vec![python().into(), "-c".into(), PY_SUBPROCESS.into()],
            env: Vec::new(),
            want_status: 0,
            writes_stderr: true,
            concurrent: false,
        },
        "perl_pipes" => simple(
            &[
                "perl",
                "-e",
                r#"use strict; use warnings;
$| = 1;
my $d = `date -u -d \@0`;
chomp $d;
print "captured: $d\n";
system("ls data > /dev/null");
system("ls no-such-file 2>/dev/null");
open(my $fh, '>', 'perl.txt') or die; print $fh "to a file\n"; close $fh;
open(my $p, '|-', 'sort') or die; print $p "b\na\nc\n"; close $p;
open(my $r, '-|', 'ls', 'data') or die; my @l = <$r>; close $r;
print "listed ", scalar(@l), "\n";
print STDERR "perl stderr\n";
printf STDOUT "%d items\n", 3;"#,
            ],
            0,
            true,
        ),
        "node" => {
            let Ok(out) = Command::new("sh").args(["-c", "command -v node"]).output() else {
                return None;
            };
            if !out.status.success() {
                eprintln!("node is not installed: nothing to check here");
                return None;
            }
            simple(&["node", "-e", NODE], 0, true)
        }
        "bash_closed_stdout" => bash(
            bench,
            name,
            r#"( exec >&-; @PY@ -c '
import os
f = os.open("reused1.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(f, b"fd %d took the place of the closed stdout\n" % f)
' )
cat reused1.txt
( exec 2>&-; @PY@ -c '
import os
f = os.open("reused2.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(f, b"fd %d took the place of the closed stderr\n" % f)
' )
cat reused2.txt
echo closed-done >&2
"#,
            0,
        ),
        "bash_xtrace" => {
            let mut c = bash(
                bench,
                name,
                r#"x=$(echo captured)
y=`date -u -d @0 +%Y`
echo "x=$x y=$y"
ls data | head -n 1 >/dev/null
no-such-command-here || true
f() { echo "in f: $1"; }
f arg
"#,
                0,
            );
            c.argv.insert(1, "-x".into());
            // Both stages of the pipeline trace themselves on stderr at the same time.
            c.concurrent = true;
            c
        }
        "python_multiprocessing" => Case {
            argv: vec![python().into(), "-c".into(), PY_MULTIPROCESSING.into()],
            env: Vec::new(),
            want_status: 0,
            writes_stderr: true,
            concurrent: false,
        },
        "big_writes" => Case {
            argv: vec![python().into(), "-c".into(), PY_BIG_WRITES.into()],
            env: Vec::new(),
            want_status: 0,
            writes_stderr: true,
            concurrent: false,
        },
        "bash_concurrent" => {
            let mut c = bash(
                bench,
                name,
                r#"for i in 1 2 3 4; do
  ( echo "job $i out"; echo "job $i err" >&2; ls data/words.txt
    ls no-such-$i 2>&1 >/dev/null | sed "s/^/job $i: /" ) &
done
wait
echo all-done
"#,
                0,
            );
            c.concurrent = true;
            c
        }
        other => panic!("no corpus case {other}"),
    };
    Some(case)
}

/// Runs `case` once in `mode` with `capture`.
fn run_once(name: &str, case: &Case, bench: &Bench, capture: Capture, mode: Mode) -> RunResult {
    bench.reset_work();
    let setup = (mode != Mode::Untapped)
        .then(|| Setup::new(&format!("fid-{name}-{}", mode.label()), Transport::Ring));
    let mut cmd = match &setup {
        None => Command::new(&case.argv[0]),
        Some(s) => {
            let mut c = s.command(&case.argv[0]);
            c.env("LLT_TAP_INTO", "3");
            if mode == Mode::Suppressed {
                c.env("LLT_SUPPRESS_STDOUT", "true")
                    .env("LLT_SUPPRESS_STDERR", "true");
            }
            c
        }
    };
    cmd.args(&case.argv[1..])
        .current_dir(bench.work())
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        // Set by the library itself, never inherited from the test.
        .env_remove("LLT_STREAM_IDS")
        .env_remove("PYTHONUNBUFFERED")
        .stdin(Stdio::null())
        // Its own process group, so that a run that overstays is killed with all it started.
        .process_group(0);
    if mode == Mode::Untapped {
        cmd.env_remove("LD_PRELOAD");
    }
    if capture.one_stream() {
        // The library injects PYTHONUNBUFFERED=1 (the seed's behaviour): it does not change
        // the bytes of either stream, but it does change how Python's stdout and stderr
        // interleave in one stream. Set it in every run so the combined outputs compare.
        cmd.env("PYTHONUNBUFFERED", "1");
    }
    for (k, v) in &case.env {
        cmd.env(k, v);
    }

    let (status, stdout, stderr) = match capture {
        Capture::Pipes => {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            let mut child = cmd.spawn().expect("spawn");
            let out = drain(child.stdout.take());
            let err = drain(child.stderr.take());
            drop(cmd);
            let status = wait_limited(&mut child);
            (
                status,
                collect_output(out, &child),
                collect_output(err, &child),
            )
        }
        Capture::Files => {
            let cap = bench.cap();
            std::fs::create_dir_all(&cap).unwrap();
            let (o, e) = (
                cap.join(format!("{}.stdout", mode.label())),
                cap.join(format!("{}.stderr", mode.label())),
            );
            cmd.stdout(std::fs::File::create(&o).unwrap())
                .stderr(std::fs::File::create(&e).unwrap());
            let mut child = cmd.spawn().expect("spawn");
            drop(cmd);
            let status = wait_limited(&mut child);
            (
                status,
                std::fs::read(&o).unwrap(),
                std::fs::read(&e).unwrap(),
            )
        }
        Capture::Tty => {
            let (master, slave) = open_pty();
            cmd.stdout(slave.try_clone().unwrap()).stderr(slave);
            let mut child = cmd.spawn().expect("spawn");
            // The parent's copies of the slave go with `cmd`, so that the master sees EIO.
            drop(cmd);
            let both = drain(Some(PtyMaster(master)));
            let status = wait_limited(&mut child);
            (status, collect_output(both, &child), Vec::new())
        }
        Capture::Merged => {
            let (reader, writer) = std::io::pipe().unwrap();
            cmd.stdout(writer.try_clone().unwrap()).stderr(writer);
            let mut child = cmd.spawn().expect("spawn");
            // The parent's copies of the write end go with `cmd`, so that EOF comes.
            drop(cmd);
            let both = drain(Some(reader));
            let status = wait_limited(&mut child);
            (status, collect_output(both, &child), Vec::new())
        }
    };

    let collected = setup.as_ref().map(|s| {
        let (want_out, want_err) = if capture.one_stream() {
            (stdout.len() + stderr.len(), 0)
        } else {
            (stdout.len(), stderr.len())
        };
        settle(s, capture, want_out, want_err)
    });
    RunResult {
        mode,
        status,
        stdout,
        stderr,
        files: snapshot(&bench.work()),
        collected,
    }
}

/// A pseudo-terminal pair (80×24) whose slave does no output processing (no `\n` → `\r\n`).
fn open_pty() -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    let ws = libc::winsize {
        ws_row: 24,
        ws_col: 80,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: valid out pointers; a null name and termios are allowed.
    let r = unsafe {
        libc::openpty(
            &raw mut master,
            &raw mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &raw const ws,
        )
    };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both fds are fresh and ours.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [&master, &slave] {
        // SAFETY: plain syscall on our fd.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: plain old data, filled by tcgetattr.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: a valid termios out pointer and our slave fd.
    let r = unsafe { libc::tcgetattr(slave.as_raw_fd(), &raw mut t) };
    assert_eq!(r, 0, "tcgetattr: {}", std::io::Error::last_os_error());
    t.c_oflag &= !libc::OPOST;
    t.c_lflag &= !(libc::ECHO | libc::ICANON);
    // SAFETY: as above.
    let r = unsafe { libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &raw const t) };
    assert_eq!(r, 0, "tcsetattr: {}", std::io::Error::last_os_error());
    (master, slave)
}

/// Reads a pty master until every slave is closed (EIO).
struct PtyMaster(OwnedFd);

impl Read for PtyMaster {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            // SAFETY: `buf` is valid for `buf.len()` bytes; our fd.
            let n = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                // Every slave closed: the end of the output.
                Some(libc::EIO) => return Ok(0),
                _ => return Err(e),
            }
        }
    }
}

fn drain<R: Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut v);
        }
        v
    })
}

/// Waits for `child` up to [`RUN_LIMIT`]; kills it (and returns None) after that.
fn wait_limited(child: &mut Child) -> Option<ExitStatus> {
    let end = Instant::now() + RUN_LIMIT;
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return Some(s);
        }
        if Instant::now() >= end {
            kill_group(child);
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Kills the process group the test made for `child` (the child and everything it started).
fn kill_group(child: &Child) {
    // SAFETY: kill has no memory effects; the group is the one `process_group(0)` made for
    // our child.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
}

/// The output a drain thread read, waiting at most [`RUN_LIMIT`] after the child's exit for
/// the child's own children to close the stream (they are killed after that).
fn collect_output(h: std::thread::JoinHandle<Vec<u8>>, child: &Child) -> Vec<u8> {
    let end = Instant::now() + RUN_LIMIT;
    while !h.is_finished() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    if !h.is_finished() {
        kill_group(child);
    }
    h.join().unwrap()
}

/// Waits until the receiver holds at least the expected bytes and has been quiet for a moment
/// (so extra records show up too), or until it stays quiet without them.
fn settle(s: &Setup, capture: Capture, want_out: usize, want_err: usize) -> Collected {
    let start = Instant::now();
    let mut last = (usize::MAX, 0usize);
    let mut changed = Instant::now();
    loop {
        let c = s.receiver.snapshot();
        let total: usize = c.records.iter().map(|r| r.data.len()).sum();
        let now = (c.records.len(), total);
        if now != last {
            last = now;
            changed = Instant::now();
        }
        let complete = if capture.one_stream() {
            total >= want_out
        } else {
            c.bytes(None, STDOUT).len() >= want_out && c.bytes(None, STDERR).len() >= want_err
        };
        let quiet = changed.elapsed();
        if (complete && quiet >= QUIET_WHEN_COMPLETE)
            || quiet >= QUIET_WHEN_SHORT
            || start.elapsed() >= SETTLE_LIMIT
        {
            return c;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every regular file under `dir`, by relative path.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The records of the given streams, ordered by time stamp, then pid, then seq, joined.
fn joined(c: &Collected, streams: &[u8]) -> Vec<u8> {
    let mut recs: Vec<&Record> = c
        .records
        .iter()
        .filter(|r| streams.contains(&r.stream))
        .collect();
    recs.sort_by_key(|r| (r.time_ns, r.pid, r.seq));
    recs.iter().flat_map(|r| r.data.iter().copied()).collect()
}

/// The records of each (pid, stream) of `streams`, each in time-then-seq order, joined; the
/// sources ordered by their first record.
fn sources(c: &Collected, streams: &[u8]) -> Vec<((u32, u8), Vec<u8>)> {
    let mut recs: Vec<&Record> = c
        .records
        .iter()
        .filter(|r| streams.contains(&r.stream))
        .collect();
    recs.sort_by_key(|r| (r.time_ns, r.pid, r.seq));
    let mut out: Vec<((u32, u8), Vec<u8>)> = Vec::new();
    for r in recs {
        let key = (r.pid, r.stream);
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.extend_from_slice(&r.data),
            None => out.push((key, r.data.clone())),
        }
    }
    out
}

/// Compares the records of `streams` with `want`: joined in time-pid-seq order, or, when
/// `interleaved`, as an interleaving of each (pid, stream)'s records (see
/// [`interleaving_diff`]).
fn records_diff(
    what: &str,
    c: &Collected,
    streams: &[u8],
    want: &[u8],
    interleaved: bool,
) -> Option<String> {
    if interleaved {
        interleaving_diff(what, &sources(c, streams), want)
    } else {
        byte_diff(what, &joined(c, streams), want)
    }
}

/// Compares two runs' outputs: byte for byte, or, with concurrent writers (whose order varies
/// from run to run), as the same lines in any order.
fn output_diff(what: &str, got: &[u8], want: &[u8], any_order: bool) -> Option<String> {
    if !any_order {
        return byte_diff(what, got, want);
    }
    let sorted = |b: &[u8]| -> Vec<u8> {
        let mut lines: Vec<&[u8]> = b.split_inclusive(|&c| c == b'\n').collect();
        lines.sort();
        lines.concat()
    };
    byte_diff(
        &format!("{what} (lines sorted)"),
        &sorted(got),
        &sorted(want),
    )
}

/// `None` when `out` is an interleaving of the sources' bytes (each source kept in its own
/// order, every byte of every source used once), else where the matching stops: the
/// longest prefix of `out` any interleaving explains, and what each source offers there.
///
/// This is what can be required when several sources write to one stream at the same time:
/// stdio bytes may be tapped when the FILE accepts them, which is before it writes them, so
/// a process's stdout and stderr records on one terminal or pipe (`Capture::one_stream`), or
/// two concurrent processes' line-buffered partial lines, need not be in the kernel's order.
fn interleaving_diff(what: &str, sources: &[((u32, u8), Vec<u8>)], out: &[u8]) -> Option<String> {
    use std::collections::HashSet;
    let total: usize = sources.iter().map(|(_, v)| v.len()).sum();
    let k = sources.len();
    // Depth-first search over the sources' positions, with memory of dead states.
    let mut seen: HashSet<Vec<usize>> = HashSet::new();
    let mut stack: Vec<(Vec<usize>, usize)> = vec![(vec![0; k], 0)];
    let mut best: (usize, Vec<usize>) = (0, vec![0; k]);
    while let Some((state, next)) = stack.pop() {
        let at: usize = state.iter().sum();
        if at > best.0 {
            best = (at, state.clone());
        }
        if at == out.len() && at == total {
            return None;
        }
        if at == out.len() {
            continue;
        }
        let cand = (next..k).find(|&i| sources[i].1.get(state[i]) == Some(&out[at]));
        let Some(i) = cand else { continue };
        stack.push((state.clone(), i + 1));
        let mut s2 = state;
        s2[i] += 1;
        if seen.insert(s2.clone()) {
            stack.push((s2, 0));
        }
    }
    let (at, state) = best;
    let from = at.saturating_sub(48);
    let mut msg = format!(
        "{what}: got {total} bytes of records, want {} bytes; no interleaving of the records explains more than the first {at} bytes\n      want: \"{}\u{2502}{}\"",
        out.len(),
        out[from..at].escape_ascii(),
        out[at..(at + 48).min(out.len())].escape_ascii(),
    );
    for (i, ((pid, stream), bytes)) in sources.iter().enumerate() {
        let p = state[i];
        if p < bytes.len() {
            msg.push_str(&format!(
                "\n      pid {pid} stream {stream} has left: \"{}\"{}",
                bytes[p..(p + 48).min(bytes.len())].escape_ascii(),
                if bytes.len() - p > 48 { "…" } else { "" }
            ));
        }
    }
    Some(msg)
}

/// A short account of the records (for messages): per pid, stream and escaped bytes.
fn describe(c: &Collected) -> String {
    let mut recs: Vec<&Record> = c.records.iter().collect();
    recs.sort_by_key(|r| (r.time_ns, r.pid, r.seq));
    let mut s = String::new();
    for r in recs.iter().take(40) {
        s.push_str(&format!(
            "\n        pid {} seq {} stream {}: {}",
            r.pid,
            r.seq,
            r.stream,
            excerpt(&r.data)
        ));
    }
    if recs.len() > 40 {
        s.push_str(&format!("\n        … {} records in all", recs.len()));
    }
    s
}

fn status_text(s: Option<ExitStatus>) -> String {
    match s {
        None => format!("killed after {RUN_LIMIT:?}"),
        Some(s) => format!("{s}"),
    }
}

fn compare_files(problems: &mut Vec<String>, label: &str, got: &RunResult, want: &RunResult) {
    for (path, bytes) in &want.files {
        match got.files.get(path) {
            None => problems.push(format!("[{label}] file {path} is missing")),
            Some(g) => {
                if let Some(d) = byte_diff(&format!("[{label}] file {path}"), g, bytes) {
                    problems.push(d);
                }
            }
        }
    }
    for path in got.files.keys() {
        if !want.files.contains_key(path) {
            problems.push(format!(
                "[{label}] file {path} exists only in this run: {}",
                excerpt(&got.files[path])
            ));
        }
    }
}

fn check_receiver(problems: &mut Vec<String>, r: &RunResult) {
    let label = r.mode.label();
    let c = r.collected.as_ref().unwrap();
    if !c.errors.is_empty() {
        problems.push(format!("[{label}] receiver errors: {:?}", c.errors));
    }
    let dropped = c.dropped();
    if dropped != (0, 0) {
        problems.push(format!(
            "[{label}] the library reported {} records / {} bytes dropped",
            dropped.0, dropped.1
        ));
    }
    let other: Vec<&Record> = c
        .records
        .iter()
        .filter(|r| r.stream != STDOUT && r.stream != STDERR)
        .collect();
    if !other.is_empty() {
        problems.push(format!(
            "[{label}] {} records of a stream other than stdout/stderr, first: stream {} {}",
            other.len(),
            other[0].stream,
            excerpt(&other[0].data)
        ));
    }
}

/// One stream (or the one combined stream) as the three runs saw it.
struct Part<'a> {
    streams: &'static [u8],
    what: &'static str,
    plain: &'a [u8],
    tapped: &'a [u8],
    suppressed: &'a [u8],
}

/// Runs corpus case `name` three ways with `capture` and checks everything; panics with the
/// list of problems.
fn check(name: &str, capture: Capture) {
    let bench = Bench {
        root: TempDir::new(&format!("fid-{name}")),
    };
    let Some(case) = build_case(name, &bench) else {
        return;
    };
    let plain = run_once(name, &case, &bench, capture, Mode::Untapped);
    // The case itself must be sound before the library is judged by it.
    let plain_status = plain
        .status
        .unwrap_or_else(|| panic!("the untapped run of {name} did not finish"));
    assert_eq!(
        plain_status.code(),
        Some(case.want_status),
        "the untapped run of {name} (a test bug): stdout {} stderr {}",
        excerpt(&plain.stdout),
        excerpt(&plain.stderr)
    );
    assert!(
        !plain.stdout.is_empty(),
        "the untapped run of {name} wrote nothing (a test bug)"
    );
    if !capture.one_stream() {
        assert_eq!(
            !plain.stderr.is_empty(),
            case.writes_stderr,
            "stderr of the untapped run of {name} (a test bug): {}",
            excerpt(&plain.stderr)
        );
    }

    let tapped = run_once(name, &case, &bench, capture, Mode::Tapped);
    let supp = run_once(name, &case, &bench, capture, Mode::Suppressed);

    let mut problems = Vec::new();
    for r in [&tapped, &supp] {
        let label = r.mode.label();
        if r.status.map(|s| s.into_raw()) != plain.status.map(|s| s.into_raw()) {
            problems.push(format!(
                "[{label}] exit status {} but {} untapped",
                status_text(r.status),
                status_text(plain.status)
            ));
        }
        check_receiver(&mut problems, r);
        compare_files(&mut problems, label, r, &plain);
    }

    // What is compared: each stream, or the one combined stream.
    let parts: Vec<Part> = if capture.one_stream() {
        vec![Part {
            streams: &[STDOUT, STDERR],
            what: "combined stdout+stderr",
            plain: &plain.stdout,
            tapped: &tapped.stdout,
            suppressed: &supp.stdout,
        }]
    } else {
        vec![
            Part {
                streams: &[STDOUT],
                what: "stdout",
                plain: &plain.stdout,
                tapped: &tapped.stdout,
                suppressed: &supp.stdout,
            },
            Part {
                streams: &[STDERR],
                what: "stderr",
                plain: &plain.stderr,
                tapped: &tapped.stderr,
                suppressed: &supp.stderr,
            },
        ]
    };
    let interleaved = capture.one_stream() || case.concurrent;
    let tapped_c = tapped.collected.as_ref().unwrap();
    let supp_c = supp.collected.as_ref().unwrap();
    for Part {
        streams,
        what,
        plain: plain_out,
        tapped: tapped_out,
        suppressed: supp_out,
    } in parts
    {
        // Tapped: the program's own output is untouched, and the records are exactly it.
        problems.extend(output_diff(
            &format!("[tapped] the real {what} vs the untapped run's"),
            tapped_out,
            plain_out,
            case.concurrent,
        ));
        problems.extend(records_diff(
            &format!("[tapped] {what} records vs what reached the real {what}"),
            tapped_c,
            streams,
            tapped_out,
            interleaved,
        ));
        // Suppressed: the records are the untapped output; the real streams get nothing.
        if !supp_out.is_empty() {
            problems.push(format!(
                "[suppressed] the real {what} received {}",
                excerpt(supp_out)
            ));
        }
        problems.extend(records_diff(
            &format!("[suppressed] {what} records vs the untapped run's {what}"),
            supp_c,
            streams,
            plain_out,
            interleaved,
        ));
    }

    if !problems.is_empty() {
        panic!(
            "{name} ({capture:?}): {} problem(s)\n  - {}\n  records of the tapped run:{}\n  records of the suppressed run:{}",
            problems.len(),
            problems.join("\n  - "),
            describe(tapped.collected.as_ref().unwrap()),
            describe(supp.collected.as_ref().unwrap()),
        );
    }
}

/// `case: modes;` → a module `case` with one test per capture mode (`pipes`, `files`,
/// `merged`, `tty`), e.g. `ls_l::tty`.
macro_rules! corpus {
    ($($name:ident: $($mode:ident)+;)*) => {
        $(
            mod $name {
                $( #[test] fn $mode() { super::check(stringify!($name), super::Capture::named(stringify!($mode))) } )+
            }
        )*
    };
}

corpus!(
    // coreutils
    ls_l: pipes files merged tty;
    ls_missing: pipes files merged tty;
    echo: pipes files merged tty;
    printf: pipes files merged tty;
    date: pipes files merged tty;
    wc: pipes files merged tty;
    cat: pipes files merged tty;
    sort: pipes files merged tty;
    head: pipes files merged tty;
    id: pipes files merged tty;
    uname: pipes files merged tty;
    seq_big: pipes files merged tty;
    gzip_binary_stdout: pipes files merged;
    tar_to_stdout: pipes files merged;
    coreutils_misc: pipes files merged tty;
    stdbuf: pipes files merged tty;
    // other tools and interpreters
    awk: pipes files merged tty;
    sed: pipes files merged tty;
    make: pipes files merged tty;
    perl: pipes files merged tty;
    perl_pipes: pipes files merged tty;
    python_logging: pipes files merged tty;
    python_subprocess: pipes files merged tty;
    python_multiprocessing: pipes files merged tty;
    big_writes: pipes files merged tty;
    node: pipes files merged tty;
    // C, -O2, inlined stdio macros
    c_putc_full: pipes files merged tty;
    c_putc_line: pipes files merged tty;
    c_putc_none: pipes files merged tty;
    c_redirect: pipes files merged tty;
    // shell scripts
    bash_substitution: pipes files merged tty;
    bash_devnull: pipes files merged tty;
    bash_to_file: pipes files merged tty;
    bash_2to1: pipes files merged tty;
    bash_pipeline: pipes files merged tty;
    bash_sigpipe: pipes files merged tty;
    bash_exec_redirect: pipes files merged tty;
    // `>/dev/stdout` truncates a regular file: not a files-capture case.
    bash_dev_stdout: pipes merged tty;
    bash_closed_stdout: pipes files merged tty;
    bash_background: pipes files merged tty;
    bash_procsub_heredoc: pipes files merged tty;
    bash_xargs_find: pipes files merged tty;
    bash_file_tools: pipes files merged tty;
    bash_xtrace: pipes files merged tty;
    bash_concurrent: pipes files merged tty;
    sh_issue_examples: pipes files merged tty;
    // pyenv-shaped shims that exec the real interpreter
    pyenv_shim: pipes files merged tty;
    pyenv_real_shim: pipes files merged tty;
);

#[test]
fn byte_diff_points_at_the_first_difference() {
    assert!(byte_diff("x", b"abc", b"abc").is_none());
    let d = byte_diff("x", b"hithere\n", b"hi there\n").unwrap();
    assert!(d.contains("offset 2"), "{d}");
    assert!(d.contains("hi\u{2502}there"), "{d}");
    let d = byte_diff("x", b"", b"plain line\n").unwrap();
    assert!(
        d.contains("got 0 bytes, want 11 bytes; first difference at offset 0"),
        "{d}"
    );
    let d = byte_diff("x", b"ab\n", b"ab").unwrap();
    assert!(d.contains("offset 2"), "{d}");
}

#[test]
fn records_are_ordered_by_time_then_pid_then_seq() {
    let rec = |pid, seq, time_ns, data: &str| Record {
        pid,
        stream: STDOUT,
        file_index: 0,
        seq,
        time_ns,
        continued: false,
        data: data.as_bytes().to_vec(),
        via: logtap_tests::tap_receiver::Via::Ring,
    };
    let c = Collected {
        records: vec![
            rec(20, 1, 200, "child "),
            rec(10, 2, 300, "parent-after "),
            rec(10, 1, 100, "parent-before "),
            rec(10, 4, 300, "b"),
            rec(10, 3, 300, "a"),
        ],
        ..Collected::default()
    };
    assert_eq!(
        joined(&c, &[STDOUT]),
        b"parent-before child parent-after ab"
    );
}

#[test]
fn interleavings_are_recognised() {
    let src = |pid, stream, s: &str| ((pid, stream), s.as_bytes().to_vec());
    let two = [src(1, STDOUT, "out1\nout2\n"), src(1, STDERR, "err\n")];
    assert!(interleaving_diff("x", &two, b"err\nout1\nout2\n").is_none());
    assert!(interleaving_diff("x", &two, b"out1\nerr\nout2\n").is_none());
    // Needs backtracking: both sources start with the same bytes.
    let same = [src(1, STDOUT, "ab"), src(2, STDOUT, "ac")];
    assert!(interleaving_diff("x", &same, b"acab").is_none());
    // A source's own order is kept.
    let d = interleaving_diff("x", &two, b"out2\nout1\nerr\n").unwrap();
    assert!(d.contains("explains more than the first 3 bytes"), "{d}");
    // Nothing more, nothing less.
    assert!(interleaving_diff("x", &two, b"err\nout1\nout2\nextra").is_some());
    assert!(interleaving_diff("x", &two, b"err\nout1\n").is_some());
}
