#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Write libsockkit's manual pages at build time, each from one source.

  mkman.py api OUTDIR SOCKKIT.MAP SOCKKIT.7.IN HEADER...
      A section 3 page for every function the headers declare with SK_API
      (which must be those the symbol map exports),
      made from its doxygen comment and prototype (and the comments of the
      types and error codes it uses), and sockkit(7) from its source, the
      headers' file comments filling @HEADERS@ and error.h's codes @CODES@.

  mkman.py program OUT SOURCE.1.in PROGRAM VERSION
      A section 1 page from its source; @SYNOPSIS@, @OPTIONS@ and @BACKENDS@
      are filled from what the program itself prints for --help, so the page
      and --help cannot disagree. "@include FILE" includes FILE (roff),
      looked up beside SOURCE.

The date on every page is SOURCE_DATE_EPOCH's, or that of the newest input.
Pages are man(7) and pass `mandoc -Tlint` and `groff -ww` without a warning
(tests/check_man.sh checks).
"""
import datetime
import errno
import os
import re
import subprocess
import sys

MANUAL = 'libsockkit manual'


def page_date(inputs):
    epoch = os.environ.get('SOURCE_DATE_EPOCH')
    stamp = int(epoch) if epoch else max(int(os.path.getmtime(p)) for p in inputs)
    return datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc).strftime('%Y-%m-%d')


def version_of(headers):
    """The version from version.h (built from version.h.in)."""
    for h in headers:
        if os.path.basename(h) == 'version.h':
            text = open(h).read()
            parts = [re.search(r'#define SK_VERSION_%s (\d+)' % k, text).group(1)
                     for k in ('MAJOR', 'MINOR', 'PATCH')]
            return '.'.join(parts)
    sys.exit('mkman.py: version.h is not among the headers')


# ---- roff text ----

def esc(text):
    """Plain text for roff: backslashes as \\e, other than ASCII as \\[uXXXX]."""
    text = text.replace('\\', '\\e')
    return re.sub(r'[^\x00-\x7f]', lambda m: '\\[u%04X]' % ord(m.group(0)), text)


def tidy(lines):
    """The page's lines, without a paragraph macro where a heading already breaks."""
    out = []
    for line in lines:
        if line == '.PP' and out and re.match(r'\.(SH|SS|PP)\b', out[-1]):
            continue
        out.append(line)
    return '\n'.join(out) + '\n'


def line_safe(line):
    return '\\&' + line if line[:1] in ('.', "'") else line


class Inline:
    """Doxygen's inline markup in roff: `code`, @p arg, #SYMBOL, @ref X, f()."""

    def __init__(self, functions, this=None):
        self.functions = functions
        self.this = this  # the page's own function: no reference to itself

    def __call__(self, text):
        out = []
        pos = 0
        for m in re.finditer(r'`([^`]*)`', text):
            out.append(self.words(text[pos:m.start()]))
            out.append('\\fB' + esc(m.group(1)).replace('-', '\\-') + '\\fR')
            pos = m.end()
        out.append(self.words(text[pos:]))
        return ''.join(out)

    def words(self, text):
        text = esc(text)
        text = re.sub(r'@p\s+(\w+)', r'\\fI\1\\fR', text)
        text = re.sub(r'@ref\s+(\w+)::(\w+)', r'\\fB\1.\2\\fR', text)
        text = re.sub(r'@ref\s+(\w+)', r'\\fB\1\\fR', text)
        text = re.sub(r'#(\w+)', r'\\fB\1\\fR', text)
        text = re.sub(r'\b(\w+)::(\w+)', r'\\fB\1.\2\\fR', text)

        def call(m):
            name = m.group(1)
            if name in self.functions and name != self.this:
                return '\\fB%s\\fR(3)' % name
            return '\\fB%s\\fR()' % name
        return re.sub(r'\b(sk_\w+)\(\)', call, text)


def paragraphs(lines, inline):
    """Doxygen body lines as roff: paragraphs, '- ' lists, @code blocks."""
    out = []
    i = 0
    para = []

    def flush():
        if para:
            out.append('.PP')
            out.extend(line_safe(inline(p)) for p in para)
            para.clear()
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped == '@code':
            flush()
            out += ['.PP', '.RS 4', '.nf']
            i += 1
            while i < len(lines) and lines[i].strip() != '@endcode':
                out.append(line_safe(esc(lines[i])))
                i += 1
            out += ['.fi', '.RE']
        elif stripped.startswith('## '):
            flush()
            out += ['.PP', '\\fB%s\\fR' % inline(stripped[3:])]
        elif stripped.startswith('|'):
            # a table: a tagged paragraph per row, "heading: cell" for the others
            flush()
            rows = []
            while i < len(lines) and lines[i].strip().startswith('|'):
                cells = [c.strip() for c in lines[i].strip().strip('|').split('|')]
                if not all(re.fullmatch(r':?-+:?', c) for c in cells):
                    rows.append(cells)
                i += 1
            i -= 1
            heads = rows[0]
            for row in rows[1:]:
                out += ['.TP', line_safe(inline(row[0]))]
                out.append(line_safe(inline('; '.join('%s: %s' % (h, c) for h, c in
                                                      zip(heads[1:], row[1:])))))
        elif stripped.startswith('- '):
            flush()
            item = [stripped[2:]]
            indent = len(line) - len(line.lstrip()) + 2
            while (i + 1 < len(lines) and lines[i + 1].strip() and
                   not lines[i + 1].strip().startswith('- ') and
                   len(lines[i + 1]) - len(lines[i + 1].lstrip()) >= indent):
                i += 1
                item.append(lines[i].strip())
            out += ['.IP \\(bu 2'] + [line_safe(inline(t)) for t in item]
        elif not stripped:
            flush()
        else:
            para.append(stripped)
        i += 1
    flush()
    return out


# ---- headers ----

class Doc:
    """One doxygen comment: its body lines and its tags."""

    def __init__(self, raw):
        lines = []
        for line in raw.split('\n'):
            line = re.sub(r'^\s*\*(?!/) ?', '', line)
            lines.append(line.rstrip())
        while lines and not lines[0].strip():
            lines.pop(0)
        self.body, self.params, self.ret, self.since = [], [], [], None
        self.brief = []
        target = self.body
        for line in lines:
            s = line.strip()
            m = re.match(r'@param(?:\[\w+\])?\s+(\w+)\s*(.*)', s)
            if m:
                self.params.append((m.group(1), [m.group(2)]))
                target = self.params[-1][1]
                continue
            if s.startswith('@return'):
                target = self.ret
                target.append(s[len('@return'):].strip())
                continue
            m = re.search(r'@since\s+([\d.]+)', s)
            if m:
                self.since = m.group(1)
                s = s[:m.start()].strip()
                line = line[:line.find('@since')].rstrip()
                if not s:
                    continue
            if s.startswith('@brief'):
                self.brief.append(s[len('@brief'):].strip())
                target = self.brief
                continue
            if re.match(r'@(file|name|def|cond|endcond|\{|\})', s):
                continue
            if target is self.body or not s:
                target = self.body
                target.append(line)
            else:
                target.append(s)
        while self.body and not self.body[-1].strip():
            self.body.pop()

    def text(self):
        return ' '.join(l.strip() for l in self.body if l.strip())

    def split_code(self):
        """The body without its @code blocks, and the blocks: (prose lines,
        [lines of each block, without @code and @endcode])."""
        prose, blocks, block = [], [], None
        for line in self.body:
            mark = line.strip()
            if mark == '@code':
                block = []
            elif mark == '@endcode' and block is not None:
                blocks.append(block)
                block = None
            elif block is not None:
                block.append(line)
            else:
                prose.append(line)
        if block is not None:  # its lines would vanish from the page and the test
            raise ValueError('@code without @endcode: ' + ' '.join(block)[:60])
        return prose, blocks


def strip_comments(code):
    return re.sub(r'/\*.*?\*/', ' ', code, flags=re.S)


class Header:
    def __init__(self, path):
        self.path = path
        self.name = os.path.basename(path)
        self.text = open(path).read()
        self.file_doc = None
        self.functions = []   # (name, prototype, Doc)
        self.types = {}       # name -> (kind, Doc, members [(name, Doc text)], decl)
        self.codes = {}       # SK_E... -> doc text
        self.parse()

    def parse(self):
        t = self.text
        for m in re.finditer(r'/\*\*(?!<)(.*?)\*/', t, re.S):
            doc = Doc(m.group(1))
            rest = t[m.end():]
            if '@file' in m.group(1):
                self.file_doc = doc
                continue
            decl = rest.lstrip()
            if decl.startswith('SK_API'):
                proto = ' '.join(strip_comments(decl[:decl.index(';')]).split())
                proto = proto[len('SK_API'):].strip()
                name = re.search(r'(\w+)\s*\(', proto).group(1)
                self.functions.append((name, proto, doc))
            elif decl.startswith('typedef enum') or decl.startswith('typedef struct'):
                head = decl[:decl.index(';') + 1]
                if '{' in head.split(';')[0]:
                    end = decl.index('}')
                    body = decl[decl.index('{') + 1:end]
                    name = re.match(r'\}\s*(\w+)', decl[end:]).group(1)
                    kind = 'enum' if decl.startswith('typedef enum') else 'struct'
                    self.types[name] = (kind, doc, self.members(body, kind), None)
                else:
                    name = re.search(r'(\w+)\s*;', head).group(1)
                    self.types[name] = ('opaque', doc, [], None)
            elif decl.startswith('typedef'):
                head = ' '.join(decl[:decl.index(';')].split())
                name = re.search(r'\(\s*\*\s*(\w+)\s*\)', head).group(1)
                self.types[name] = ('callback', doc, [], head + ';')
        # the error codes, in the header's order, each with its comment
        # (written before it, or after it with /**<)
        for m in re.finditer(r'(?:/\*\*(?!<)((?:(?!\*/).)*)\*/\s*)?#define\s+(SK_E\w+)\s+\S+'
                             r'(?:[ \t]*/\*\*<(.*?)\*/)?', t, re.S):
            before, code, after = m.groups()
            if before is not None and re.match(r'\s*@name\b', before):
                before = None  # a group's title, not this code's
            self.codes[code] = Doc(after if after is not None else before or '').text()

    @staticmethod
    def members(body, kind):
        """A struct's or enum's members: (declaration, doc), the doc written
        before the member (/** */) or after it (/**< */)."""
        sep = ',' if kind == 'enum' else ';'
        out, pending, decl, depth = [], None, '', 0
        for m in re.finditer(r'/\*\*(<?)(.*?)\*/|/\*.*?\*/|.', body, re.S):
            if m.group(2) is not None:
                if m.group(1) and out and not decl.strip():  # /**< after "member;"
                    out[-1] = (out[-1][0], Doc(m.group(2)).text())
                else:  # /** before a member, or /**< before its separator
                    pending = Doc(m.group(2)).text()
                continue
            ch = m.group(0)
            if ch.startswith('/*'):
                continue
            depth += ch == '('
            depth -= ch == ')'
            if ch == sep and depth == 0:
                out.append((' '.join(decl.split()), pending or ''))
                decl, pending = '', None
            else:
                decl += ch
        if decl.strip():
            out.append((' '.join(decl.split()), pending or ''))
        if kind == 'enum':
            out = [(d.split('=')[0].strip(), t) for d, t in out]
        return out


# ---- section 3 ----

def synopsis_proto(proto):
    """The prototype, wrapped at commas to fit 78 columns, name in bold."""
    name = re.search(r'(\w+)\s*\(', proto).group(1)
    head, args = proto.split('(', 1)
    lines, cur = [], head + '('
    indent = ' ' * len(cur)
    for i, arg in enumerate(a.strip() for a in args.rstrip(')').split(',')):
        piece = arg + (', ' if i < args.count(',') else ');')
        if len(cur) + len(piece.rstrip()) > 78 and cur.strip() != head.strip() + '(':
            lines.append(cur.rstrip())
            cur = indent
        cur += piece
    lines.append(cur)
    out = []
    for line in lines:
        line = esc(line)
        line = line.replace(name + '(', '\\fB' + name + '\\fP(', 1)
        out.append(line_safe(line))
    return out


def error_entries(ret_text, codes, inline):
    """The codes a @return text names, each with what the text or error.h says of it."""
    seen, out = set(), []
    for m in re.finditer(r'(-E[A-Z0-9]+|#?SK_E[A-Z0-9_]+\*?)', ret_text):
        code = m.group(1).lstrip('#')
        if code in seen:
            continue
        seen.add(code)
        after = ret_text[m.end():]
        why = re.match(r'`?\s*\(([^()]*(?:\([^()]*\)[^()]*)*)\)', after)
        if why:
            text = why.group(1)
        elif code.startswith('SK_EAI_'):
            text = 'Name resolution failed (a getaddrinfo error; see sk_strerror()).'
        elif code in codes:
            text = codes[code]
        elif code.startswith('-E') and hasattr(errno, code[1:]):
            text = os.strerror(getattr(errno, code[1:]))
        else:
            text = ''
        text = text[:1].upper() + text[1:]
        out += ['.TP', '.B ' + code.replace('-', '\\-'), line_safe(inline(text) or '\\&')]
    return out


def arguments(doc, inline, title):
    """The @param list as tagged paragraphs under a title line; none, nothing."""
    out = ['.PP', title] if doc.params else []
    for pname, ptext in doc.params:
        out += ['.TP', '.I ' + pname, line_safe(inline(' '.join(ptext)))]
    return out


def type_section(name, info, inline):
    kind, doc, members, decl = info
    out = ['.SS The %s type' % name]
    if decl:
        out += ['.PP', '.nf', line_safe(esc(decl)), '.fi']
    out += paragraphs(doc.body, inline) + arguments(doc, inline, 'Its arguments:')
    for mname, mtext in members:
        out += ['.TP', '.B ' + esc(mname), line_safe(inline(mtext) or '\\&')]
    return out


def function_page(header, name, proto, doc, all_types, codes, functions, version, date):
    inline = Inline(functions, name)
    first = doc.text()
    summary = re.split(r'(?<=[a-z)`])\.(\s|$)', first)[0].strip()
    if len(summary) > 64:  # the NAME line is for whatis(1): its first clause
        cuts = [m.start() for m in re.finditer(r': |; | \(|, ', summary) if m.start() >= 16]
        summary = summary[:cuts[0]] if cuts else summary
    first_word = summary.split()[0]
    if not ((first_word.isupper() and len(first_word) > 1) or '_' in first_word or '`' in first_word):
        summary = summary[0].lower() + summary[1:]
    out = ['.TH %s 3 %s "libsockkit %s" "%s"' % (name.upper(), date, version, MANUAL),
           '.SH NAME', '%s \\- %s' % (name, inline(summary)),
           '.SH LIBRARY', 'libsockkit (\\fI\\-lsockkit\\fR; \\fBpkg\\-config \\-\\-cflags '
           '\\-\\-libs sockkit\\fR)',
           '.SH SYNOPSIS', '.nf', '.B #include <sockkit/%s>' % header.name, '.PP']
    out += synopsis_proto(proto) + ['.fi', '.SH DESCRIPTION']
    prose, examples = doc.split_code()
    out += paragraphs(prose, inline) + arguments(doc, inline, 'The arguments:')
    used = [t for t in re.findall(r'\b(sk_\w+)\b', proto) if t in all_types and t != name]
    for t in dict.fromkeys(used):
        if all_types[t][0] != 'opaque':
            out += type_section(t, all_types[t], inline)
    ret = ' '.join(doc.ret)
    out += ['.SH RETURN VALUE']
    if ret:
        out.append(line_safe(inline(ret[0].upper() + ret[1:])))
    elif proto.startswith('void '):
        out.append('None.')
    else:
        out.append('See DESCRIPTION.')
    errors = error_entries(ret, codes, inline)
    if errors:
        out += ['.SH ERRORS', 'Errors are returned as negative codes; '
                '\\fBsk_strerror\\fR(3) describes any of them.'] + errors
    if examples:
        out += ['.SH EXAMPLES']
        for block in examples:
            out += paragraphs(['@code'] + block + ['@endcode'], inline)
    out += ['.SH HISTORY', 'Added in libsockkit %s.' % (doc.since or '1.0')]
    related = [f for f, _, _ in header.functions if f != name]
    out += ['.SH SEE ALSO'] + ['.BR %s (3),' % f for f in related] + ['.BR sockkit (7)']
    return tidy(out)


def api(outdir, symbol_map, overview, headers):
    version = version_of(headers)
    date = page_date(headers + [overview])
    parsed = [Header(h) for h in headers]
    functions = {f for h in parsed for f, _, _ in h.functions}
    exported = set(re.findall(r'^\s*(sk_\w+);', open(symbol_map).read(), re.M))
    if functions != exported:
        sys.exit('mkman.py: the headers declare %s but the symbol map exports %s' % (
            sorted(functions - exported) or 'no more', sorted(exported - functions) or 'no more'))
    all_types, codes = {}, {}
    for h in parsed:
        all_types.update(h.types)
        codes.update(h.codes)
    os.makedirs(outdir, exist_ok=True)
    for h in parsed:
        for name, proto, doc in h.functions:
            with open(os.path.join(outdir, name + '.3'), 'w') as f:
                f.write(function_page(h, name, proto, doc, all_types, codes, functions,
                                      version, date))
    # sockkit(7): its source, with a section per header
    inline = Inline(functions)
    sections = []
    for h in parsed:
        if not h.functions or not h.file_doc:
            continue
        brief = ' '.join(h.file_doc.brief)
        sections += ['.SS <sockkit/%s>' % h.name, line_safe(inline(brief))]
        sections += paragraphs(h.file_doc.body, inline)
        sections += ['.PP', 'Functions:']
        names = [f for f, _, _ in h.functions]
        sections += ['.BR %s (3)%s' % (f, ',' if i + 1 < len(names) else '.')
                     for i, f in enumerate(names)]
    text = open(overview).read()
    text = text.replace('@DATE@', date).replace('@VERSION@', version)
    text = text.replace('@HEADERS@', '\n'.join(sections))
    listed = []
    for code, doc in codes.items():
        listed += ['.TP', '.B ' + code, line_safe(inline(doc) or '\\&')]
    text = text.replace('@CODES@', '\n'.join(listed))
    with open(os.path.join(outdir, 'sockkit.7'), 'w') as f:
        f.write(tidy(text.rstrip('\n').split('\n')))


# ---- section 1 ----

def parse_help(text):
    """What --help prints: the usage lines, the options (NAME, ARG, help) and the backends."""
    lines = text.split('\n')
    usage = []
    i = 0
    while i < len(lines) and (lines[i].startswith('usage:') or (usage and lines[i].startswith(' ')
                                                                 and not lines[i].lstrip().startswith('--'))):
        usage.append(lines[i].strip())
        i += 1
    usage = ' '.join(usage)[len('usage:'):].split(None, 1)[1]  # less the program's name
    opt_lines = [l for l in lines[i:] if l.startswith('  ')]
    # the help column: where the text starts on lines with two spaces before it
    columns = [m.end() for m in (re.match(r'  --\S+(?: [A-Z][A-Z0-9_]*)?\s\s+', l)
                                 for l in opt_lines if l.startswith('  --')) if m]
    if not columns:
        sys.exit('mkman.py: no options in --help')
    col = max(columns)
    options = []
    for l in opt_lines:
        if l.startswith('  --'):
            item, help_text = l[2:col].strip(), l[col:].strip()
            options.append([item, help_text])
        elif options and l[:col].strip() == '':
            options[-1][1] += ' ' + l.strip()
    m = re.search(r'^Backends: (.*?)\.?$', text, re.M)
    return usage, options, (m.group(1).split(', ') if m else [])


def option_roff(item, space=' '):
    parts = item.split(' ', 1)
    out = '\\fB' + parts[0].replace('-', '\\-') + '\\fR'
    if len(parts) > 1:
        out += space + '\\fI' + parts[1] + '\\fR'
    return out


def synopsis_words(usage):
    """The usage line in the pieces a line may break between: a bracketed
    group (nested ones included), "| ITEM", or "--option ARG"."""
    toks = re.findall(r'\[|\]|\||[^\[\]|\s]+', usage)

    def item(j):
        if toks[j] == '[':
            depth, parts = 0, []
            while True:
                depth += toks[j] == '['
                depth -= toks[j] == ']'
                parts.append(toks[j])
                j += 1
                if depth == 0:
                    text = ' '.join(parts).replace('[ ', '[').replace(' ]', ']')
                    return text, j
        if toks[j] == '|':
            text, j = item(j + 1)
            return '| ' + text, j
        if toks[j].startswith('--') and j + 1 < len(toks) and \
                re.fullmatch(r'[A-Z][A-Z0-9_]*', toks[j + 1]):
            return toks[j] + ' ' + toks[j + 1], j + 2
        return toks[j], j + 1
    words, j = [], 0
    while j < len(toks):
        text, j = item(j)
        words.append(text)
    return words


def program(out_path, source, prog, version):
    help_text = subprocess.run([prog, '--help'], check=True, capture_output=True,
                               text=True, env=dict(os.environ, LC_ALL='C')).stdout
    usage, options, backends = parse_help(help_text)
    name = os.path.basename(source).split('.')[0]
    inputs = [source]
    lines = []
    for line in open(source).read().split('\n'):
        if line.startswith('@include '):
            inc = os.path.join(os.path.dirname(source), line.split()[1])
            inputs.append(inc)
            lines += open(inc).read().rstrip('\n').split('\n')
        else:
            lines.append(line)
    text = '\n'.join(lines)
    synopsis = ['.SY %s' % name]
    for word in synopsis_words(usage):
        roff = re.sub(r'--[\w-]+(?: [A-Z][A-Z0-9_]*)?',
                      lambda m: option_roff(m.group(0)), word)
        synopsis.append(roff.replace(' ', '\\ '))
    synopsis.append('.YS')
    opts = []
    for item, help_text in options:
        opts += ['.TP', option_roff(item), line_safe(esc(help_text))]
    text = text.replace('@SYNOPSIS@', '\n'.join(synopsis))
    text = text.replace('@OPTIONS@', '\n'.join(opts))
    text = text.replace('@BACKENDS@', ', '.join('\\fB%s\\fR' % b for b in backends))
    text = text.replace('@DATE@', page_date(inputs)).replace('@VERSION@', version)
    with open(out_path, 'w') as f:
        f.write(tidy(text.rstrip('\n').split('\n')))


def main(argv):
    if len(argv) >= 5 and argv[1] == 'api':
        api(argv[2], argv[3], argv[4], argv[5:])
    elif len(argv) == 6 and argv[1] == 'program':
        program(argv[2], argv[3], argv[4], argv[5])
    else:
        sys.exit(__doc__)


if __name__ == '__main__':
    main(sys.argv)
