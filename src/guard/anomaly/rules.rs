//! The rule table. Patterns are matched against the normalised value, ASCII case-insensitively, with
//! `\s`/`\w`/`\b` meaning their ASCII forms. Paranoia-1 rules need *structure* — a quote or separator
//! followed by SQL or a command, a tag with a handler, a lookup inside `${` — never a bare word, so
//! "Select Specialty Hospital", "Drop Table Lamp", "Union Jack", "Tom & Jerry", "O'Reilly" or
//! "JavaScript: The Good Parts" pass. `[\s+]` stands for a space in SQL because a query string's `+` is one.

use super::{Family, Severity};

/// One payload rule.
#[derive(Debug)]
pub(crate) struct Rule {
    pub id: u32,
    pub family: Family,
    pub severity: Severity,
    pub paranoia: u8,
    pub pattern: &'static str,
}

/// One scanner user-agent needle.
#[derive(Debug)]
pub(crate) struct Scanner {
    pub id: u32,
    pub severity: Severity,
    pub paranoia: u8,
    pub needle: &'static str,
}

macro_rules! rules {
    ($($id:literal $family:ident $sev:ident $pl:literal $pat:expr;)*) => {
        pub(crate) const RULES: &[Rule] = &[
            $(Rule { id: $id, family: Family::$family, severity: Severity::$sev, paranoia: $pl, pattern: $pat },)*
        ];
    };
}

rules! {
    // --- SQL injection -----------------------------------------------------------------------------------
    // Quoted tautology: ' or 1=1, ' or 'a'='a, " || "x"="x, ') or ('1'='1, ' or ''='
    942100 Sqli Critical 1 r#"['"`)][\s+)]*(?:(?:or|and|xor)\b|\|\||&&)[\s+(]*['"`]*[\w.-]*['"`]*[\s+]*(?:=|<>|!=|<=|>=|<|>|like[\s+]*['"\d]|r?like\b|regexp\b|is[\s+]+(?:not[\s+]+)?null\b|in[\s+]*\([\s+]*['"\d]|between[\s+]+['"\d])"#;
    // Unquoted numeric tautology: 1 or 1=1, -1 and 2>1
    942110 Sqli Critical 1 r#"\b(?:or|and|xor)[\s+]+\(?['"]?\d+['"]?[\s+]*(?:=|<>|!=|<|>)[\s+]*['"]?\d"#;
    // ' or true--
    942120 Sqli Critical 1 r#"['"`)][\s+]*(?:or|and)[\s+]+(?:true|false|not[\s+]+false)\b"#;
    // Quote then a comment to the end: admin'--, admin'#, '/*, '; --
    942130 Sqli Critical 1 r#"['"`][\s+)]*(?:--[\s+\-]*(?:$|&[\w.-]*=)|--[\s+]*[-+;]|#[\s+]*(?:$|&[\w.-]*=)|/\*|;[\s+]*(?:--|#))"#;
    942131 Sqli Critical 1 r#"\d[\s+)]*--[\s+]*(?:$|&[\w.-]*=)"#;
    // union select with a column list
    942140 Sqli Critical 1 r#"\bunion[\s+(]+(?:all[\s+(]+|distinct[\s+(]+)?select\b[\s+(]*(?:[\w@.'"`*()]+[\s+]*(?:,|\bfrom\b)|null\b|\d|@@|\*|char\(|concat|version|user\(|database\(|--|#)"#;
    // Stacked query after a quote, paren or number
    942150 Sqli Critical 1 r#"(?:['"`)]|\b\d+)[\s+]*;[\s+]*(?:drop[\s+]+(?:table|database|schema|user)\b|delete[\s+]+from\b|insert[\s+]+into\b|update[\s+]+\w+[\s+]+set\b|select\b.*\bfrom\b|select[\s+]+(?:@@|\d|sleep|pg_sleep|version|user|char|null)|truncate[\s+]+table\b|alter[\s+]+table\b|create[\s+]+(?:table|user|database)\b|exec(?:ute)?[\s+]|shutdown\b|declare[\s+]+@|waitfor\b|grant\b)"#;
    // Time based
    942160 Sqli Critical 1 r#"\b(?:pg_)?sleep\(\s*\d|\bbenchmark[\s+]*\([\s+]*\d+[\s+]*,|\bwaitfor[\s+]+(?:delay|time)[\s+]+['"]|\bdbms_pipe\.receive_message|\bpg_sleep\b|\brandomblob\(\s*\d{6,}"#;
    // Functions and catalogues nobody types into a shop
    942170 Sqli Critical 1 r#"\b(?:extractvalue|updatexml|load_file|group_concat|xp_cmdshell|sp_executesql|sp_oacreate|utl_http|utl_inaddr|pg_read_file|sqlite_master|sysobjects|syscolumns|information_schema|dbms_xmlgen|ctxsys|make_set|elt\(\d)\b|@@(?:version|datadir|hostname|servername|basedir|tmpdir)\b|\binto[\s+]+(?:out|dump)file\b|\bmysql\.user\b|\bpg_shadow\b"#;
    942180 Sqli Critical 1 r#"\bconcat(?:_ws)?\(.*(?:0x|char\(|@@|select|user\(|version\()|\bchar\(\d+\)[\s+]*(?:\+|\|\||,)|\bcast\(.+\bas[\s+]+(?:int|char|varchar|numeric|signed)\b|\bconvert\([\s+]*int[\s+]*,|\b(?:ascii|ord|substring|substr|mid|length|count|exists)\([\s+]*\(?[\s+]*select\b"#;
    942190 Sqli Critical 1 r#"['"`)][\s+]*(?:order|group)[\s+]+by[\s+]+\d|\bhaving[\s+]+\d+[\s+]*=[\s+]*\d|\(\s*select[\s+]+(?:\d|@@|\*|count|sleep|if|case|user|version|database|concat|char|null)|\bif\(\s*\d+\s*[=<>]\s*\d+\s*,|\bcase[\s+]+when[\s+]+\(?\s*\d+\s*="#;
    942200 Sqli Critical 1 r#"['"`][\s+]*(?:;|\))?[\s+]*(?:drop|delete|insert|update|select|exec)[\s+]+.*(?:--|#)[\s+]*(?:$|&[\w.-]*=)"#;
    942300 Sqli Critical 2 r#"\bunion\b.*\bselect\b|\bselect\b[\s+].*[\s+]from[\s+]\w|\b(?:drop|truncate)[\s+]+table\b|;[\s+]*--|\bsleep[\s+]*\("#;
    942310 Sqli Notice 3 r#"\b0x[0-9a-f]{8,}\b|['"`][\s+]*(?:\+|\|\|)[\s+]*['"`]"#;

    // --- XSS ---------------------------------------------------------------------------------------------
    941110 Xss Critical 1 r#"<[\s/]*script\b"#;
    941120 Xss Critical 1 r#"<[a-z!?][^>]*[\s/"'`]on[a-z]{3,}[\s+]*="#;
    941130 Xss Critical 1 r#"\b(?:java|vb|live)script:[^\s]|\b(?:java|vb)script:\s*(?:alert|prompt|confirm|eval|document|window|location|this|top|self|parent|fetch|import|void)\b|\bdata:\s*(?:text/html|image/svg\+xml|application/(?:x-)?javascript|text/javascript)"#;
    941140 Xss Critical 1 r#"<[\s/]*(?:iframe|frame|frameset|object|embed|applet|base|meta|svg|math|isindex|xss|marquee|link|form|style|template|noscript|xmp|plaintext|portal|animate)\b"#;
    941150 Xss Critical 1 r#"\b(?:srcdoc|formaction|xlink:href|fscommand|seeksegmenttime)[\s+]*=|-moz-binding|\bbehavior[\s+]*:[\s+]*url"#;
    941160 Xss Critical 1 r#"[\s/"'`;]on(?:error|load|mouse\w+|focus\w*|blur|click|dblclick|key\w+|change|input|submit|toggle|begin|end|animation\w+|transition\w+|pointer\w+|touch\w+|drag\w*|drop|copy|cut|paste|wheel|scroll|resize|pageshow|hashchange|message|popstate|play|playing|canplay\w*|loadstart|progress|readystatechange|unload|beforeunload|invalid|auxclick|contextmenu|start|finish|afterprint|beforeprint|search|select|show|abort)[\s+]*="#;
    941170 Xss Critical 1 r#"\b(?:alert|prompt|confirm|eval|settimeout|setinterval)(?:\(|\x60)|\bdocument\.(?:cookie|domain|write|location)\b|\bwindow\.(?:location|open|name)\b|\.innerhtml[\s+]*=|\bstring\.fromcharcode\(|\batob\(|\bimport\(\s*['"`/]"#;
    941180 Xss Critical 1 r#"['"`][\s/]*>[\s+]*<[\s/]*[a-z]"#;
    941300 Xss Warning 2 r#"<[a-z]+[\s/>]|\bexpression\(|<!--|<!\[cdata\["#;

    // --- Path traversal and file access ------------------------------------------------------------------
    930100 Traversal Critical 1 r#"(?:^|[^.])\.\.(?:[/\\]|;/)|[/\\]\.\.(?:[/\\]|(?:$|&[\w.-]*=))|\.\.\.\.[/\\]|\.\.(?:\xc0\xaf|\xc1\x9c|\xe0\x80\xaf|\xc0\xae)"#;
    930120 Traversal Critical 1 r#"\betc[/\\]+(?:passwd|shadow|group|hosts|issue|motd|crontab|sudoers|hostname|resolv\.conf|os-release)\b|\bproc[/\\]+(?:self|\d+)[/\\]|\b(?:win|system|boot)\.ini\b|\bwindows[/\\]+system32\b|[/\\]\.(?:htaccess|htpasswd|env|git[/\\]|ssh[/\\]|bash_history|aws[/\\])|\bid_rsa\b|\bwp-config\.php\b|\bweb\.config\b|[/\\]var[/\\]log[/\\]|\bc:[/\\]+(?:windows|inetpub|boot)|^/root/"#;
    930130 Traversal Critical 1 r#"\b(?:php|phar|zip|expect|glob|jar|netdoc|gopher|dict|compress\.zlib|compress\.bzip2)://[^\s]|\bfile:/+(?:etc|proc|c:|windows|var|root|home|\.\.)"#;
    930140 Traversal Error 1 r#"\x00"#;

    // --- Command injection -------------------------------------------------------------------------------
    // A separator (; | || && newline backtick $( ) then a command and what a command is followed by.
    932100 CommandInjection Critical 1 r#"(?:[;|\n\r\x60]|&&|\$\()[\s+]*(?:(?:/usr)?(?:/local)?/s?bin/)?(?:whoami|uname|wget|ncat|netcat|chmod|chown|nslookup|ifconfig|ipconfig|powershell|pwsh|systeminfo|tasklist|netstat|certutil|bitsadmin|mshta|rundll32|regsvr32|wscript|cscript|nohup|printenv|crontab|sudo|telnet|busybox|xxd|socat|useradd|mkfifo)(?:(?:$|&[\w.-]*=)|[\s;|&<>\x60)'"]|\.exe\b)"#;
    932105 CommandInjection Critical 1 r#"\|[\s+]*id[\s+]*(?:$|&[\w.-]*=)|(?:[;\n\r\x60]|&&|\|\||\$\()[\s+]*(?:(?:/usr)?/s?bin/)?(?:id|ls|pwd|uname|hostname)(?:(?:$|&[\w.-]*=)|[\s;|&<>\x60)]*(?:$|&[\w.-]*=)|[\s]*[;|&\x60)])|(?:[;|\n\r\x60]|&&|\$\()[\s+]*(?:(?:/usr)?/s?bin/)?ls[\s+]+(?:-\w|[/~])"#;
    932110 CommandInjection Critical 1 r#"(?:[;|\n\r\x60]|&&|\$\()[\s+]*(?:(?:/usr)?/s?bin/)?(?:cat|more|less|head|tail|tac|nl|strings|grep|find|cp|mv|touch|kill|tar|base64|od)[\s+]+(?:-\w|[/~$]|\w+\.\w+)|(?:[;|\n\r\x60]|&&|\$\()[\s+]*(?:(?:/usr)?/s?bin/)?(?:echo|printf)[\s+]+(?:['"$\x60]|\w+[\s+]*[>|])|(?:[;|\n\r\x60]|&&|\$\()[\s+]*(?:ping|ping6)[\s+]+(?:-\w|\d+\.\d+|[\w.-]+\.[a-z]{2,})|(?:[;|\n\r\x60]|&&|\$\()[\s+]*rm[\s+]+-[rf]+|(?:[;|\n\r\x60]|&&|\$\()[\s+]*(?:nc|ncat|netcat)[\s+]+(?:-\w|\d+\.\d+)|(?:[;|\n\r\x60]|&&|\$\()[\s+]*sleep[\s+]+\d+[\s;|&\x60)]*(?:$|&[\w.-]*=)|(?:[;|\n\r\x60]|&&|\$\()[\s+]*(?:curl|wget|fetch)[\s+]+(?:-\w|https?://|ftp://|\d+\.\d+|[\w.-]+\.[a-z]{2,}[/:])"#;
    932115 CommandInjection Critical 1 r#"(?:[;|\n\r\x60]|&&|\$\()[\s+]*(?:(?:/usr)?/s?bin/)?(?:python[23]?|perl|ruby|php|lua|node|bash|sh|zsh|ksh|dash|csh)(?:[\s+]+(?:-\w|[/~$'"]|\w+\.(?:py|pl|rb|php|sh|js|lua))|[\s+]*(?:$|&[\w.-]*=))"#;
    // Windows after a single & too (Tom & Jerry passes: Jerry is not a command)
    932120 CommandInjection Critical 1 r#"(?:[;|&\n\r\x60]|\$\()[\s+]*(?:whoami|ipconfig|systeminfo|tasklist|certutil|bitsadmin|powershell|net[\s+]+(?:user|localgroup|view|share|use)\b|type[\s+]+[a-z]:\\|dir[\s+]+[a-z]:|dir[\s+]*(?:$|&[\w.-]*=)|ping[\s+]+-n\b|nslookup\b|reg[\s+]+query\b|wmic\b|cmd(?:\.exe)?[\s+]*/[ck]\b)"#;
    932130 CommandInjection Critical 1 r#"/bin/(?:ba|z|k|da|c)?sh\b|/dev/(?:tcp|udp)/|/usr/bin/(?:env|perl|python\d?|id|whoami)\b|\bcmd(?:\.exe)?[\s+]+/[ck]\b|\bpowershell(?:\.exe)?[\s+]+-\w|\bnc(?:at)?[\s+]+(?:-\w+[\s+]+)*-[el]\b|\b(?:ba)?sh[\s+]+-[ci]\b|\bmkfifo\b|\bchmod[\s+]+(?:[+][xs]|[0-7]{3,4})\b|\bpython[23]?[\s+]+-c\b|\bperl[\s+]+-e\b|\bruby[\s+]+-e\b|\bphp[\s+]+-r\b|\$\{?ifs\b|\$\(\s*[a-z/]|\x60[\s]*(?:id|ls|whoami|uname|cat|pwd|hostname|sleep|ping|curl|wget|echo|nslookup)\b[^\x60]*\x60"#;
    932140 CommandInjection Critical 1 r#"\b(?:system|exec|passthru|shell_exec|popen|proc_open|pcntl_exec)\(\s*['"$]|\b(?:runtime\.getruntime\(\)\.exec|processbuilder\()|\bos\.(?:system|popen)\(|\bsubprocess\.(?:call|run|popen|check_output)\("#;

    // --- Template / expression-language injection --------------------------------------------------------
    934100 TemplateInjection Critical 1 r#"(?:\{\{|[$#@*]\{|<%=?|\{%|\[\[|\{=)[\s+]*['"]?\d+['"]?[\s+]*[*+/%-][\s+]*['"]?\d+|\{\d+\*\d+\}"#;
    934110 TemplateInjection Critical 1 r#"__(?:class|mro|subclasses|globals|builtins|import|init|base|bases|dict|getattribute|reduce|loader|spec)__"#;
    934120 TemplateInjection Critical 1 r#"\{\{[^}]*(?:\bconfig\b|\blipsum\b|\bcycler\b|\bjoiner\b|\bnamespace\b|\bconstructor\b|_self\b|\battr\(|\|[\s]*(?:attr|filter|map|reduce|sort)\b|\bpopen\b|\bsystem\b|\bexec\b|\bimport\b|\bgetattr\b|\bdump\(|\bphpinfo\b|\brange\(|\bself\.|\brequest\.(?:application|environ|args|cookies)|\bgetruntime\b|#with\b|#each\b|\blookup\b)"#;
    934130 TemplateInjection Critical 1 r#"[$#*@%]\{[^}]*(?:\bt[\s]*\([\s]*java|new[\s]+java|java\.lang|\bruntime\b|getruntime|processbuilder|getclass|classloader|forname|\.exec\(|@java|#_memberaccess|#context|#request|#session|\binvoke\(|\bscriptengine|\bdefineclass)|\bt\(java\.|freemarker\.template\.utility\.execute|<#assign\b|\?new\(\)|#set[\s]*\([\s]*\$|\$class\.inspect|%\{[\s]*[(#]"#;
    934140 TemplateInjection Critical 1 r#"\{php\}|\{[\s]*(?:system|exec|passthru|shell_exec|readfile|file_get_contents)[\s]*\(|<%[^%]*(?:\bsystem\b|\bexec\b|\x60|\bfile\.|\bio\.|\beval\b|\bruntime\b|\brequire\b)|\{\{[\s]*['"][^'"]*['"][\s]*\.[\s]*(?:constructor|touppercase|concat)"#;
    934300 TemplateInjection Warning 2 r#"\{\{[^}]*\}\}|\$\{[^}]*\}|<%.*%>"#;

    // --- JNDI (log4shell) ----------------------------------------------------------------------------------
    944150 Jndi Critical 1 r#"\$\{[\s]*jndi[\s]*:|\bjndi:(?:ldaps?|rmi|dns|iiop|corba|nds|nis|http)\b|\$\{[^}\n]*(?:\$\{|::-)|\$\{[\s]*(?:lower|upper|env|sys|date|base64|ctx|java|main|docker|k8s|spring|web|bundle|log4j|marker|sd|map|event|jvmrunargs)[\s]*:|\$\{[^\n]*(?:ldaps?|rmi|dns|iiop|corba|nds|nis)://"#;
}

macro_rules! scanners {
    ($($id:literal $sev:ident $pl:literal [$($needle:literal),* $(,)?];)*) => {
        pub(crate) const SCANNERS: &[Scanner] = &[
            $($(Scanner { id: $id, severity: Severity::$sev, paranoia: $pl, needle: $needle },)*)*
        ];
    };
}

scanners! {
    // Security scanners and attack tools (CRS 913100).
    913100 Critical 1 [
        "sqlmap", "nikto", "nmap", "masscan", "zgrab", "nuclei", "dirbuster", "gobuster", "wpscan",
        "acunetix", "netsparker", "nessus", "openvas", "w3af", "havij", "arachni", "jaeles", "fuzz faster",
        "ffuf", "wfuzz", "feroxbuster", "dirb/", "morfeus", "zmeu", "fimap", "bsqlbf", "commix", "xsser",
        "skipfish", "webinspect", "appscan", "paros", "whatweb", "sqlninja", "jbrofuzz", "burpcollaborator",
        "burp suite", "owasp zap", "zaproxy", "hydra", "medusa/", "brutus", "netlab360", "censysinspect",
        "interactsh", "log4j-scan", "qualys", "metasploit", "python-nmap", "httpx - open-source", "x-scan",
    ];
    // Scripting libraries (CRS 913101, paranoia 2).
    913101 Notice 2 [
        "python-requests", "python-urllib", "go-http-client", "libwww-perl", "curl/", "wget/", "java/",
        "okhttp", "apache-httpclient", "scrapy", "aiohttp", "httpie", "node-fetch", "axios/", "ruby",
        "php/", "winhttp", "powershell",
    ];
    // Headless browsers and generic bots (paranoia 3).
    913102 Notice 3 ["headlesschrome", "phantomjs", "selenium", "puppeteer", "playwright", "crawler", "spider"];
}
