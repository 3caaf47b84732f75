# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_emqx_relup_global_optspecs
    string join \n root= state-dir= config= v/verbose h/help V/version
end

function __fish_emqx_relup_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_emqx_relup_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_emqx_relup_using_subcommand
    set -l cmd (__fish_emqx_relup_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c emqx-relup -n "__fish_emqx_relup_needs_command" -l root -d 'The install dir; packages are dropped into its releases/ folder' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_needs_command" -l state-dir -d 'Where the release store lives (releases/RELEASES and unpacked trees)' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_needs_command" -l config -d 'Configuration file [default: /etc/emqx/relup.toml if it exists]' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_needs_command" -s v -l verbose -d 'Say which path a switch takes (through systemd or directly)'
complete -c emqx-relup -n "__fish_emqx_relup_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c emqx-relup -n "__fish_emqx_relup_needs_command" -s V -l version -d 'Print version'
complete -c emqx-relup -n "__fish_emqx_relup_needs_command" -f -a "versions" -d 'List the known releases, newest first, with their states'
complete -c emqx-relup -n "__fish_emqx_relup_needs_command" -f -a "root_dir" -d 'Print the install dir, quoted'
complete -c emqx-relup -n "__fish_emqx_relup_needs_command" -f -a "status" -d 'Show what runs: the broker (pid, release, since when, unit or direct), a generation still draining, and a switch an interrupted command left pending with what the next command will do with it'
complete -c emqx-relup -n "__fish_emqx_relup_needs_command" -f -a "unpack" -d 'Unpack a release package without installing it'
complete -c emqx-relup -n "__fish_emqx_relup_needs_command" -f -a "install" -d 'Switch to a release (either way) and make it permanent'
complete -c emqx-relup -n "__fish_emqx_relup_needs_command" -f -a "upgrade" -d 'Unpack, switch to a newer patch release and make it permanent'
complete -c emqx-relup -n "__fish_emqx_relup_needs_command" -f -a "downgrade" -d 'Switch to an older patch release and make it permanent'
complete -c emqx-relup -n "__fish_emqx_relup_needs_command" -f -a "uninstall" -d 'Remove an old or unpacked release'
complete -c emqx-relup -n "__fish_emqx_relup_needs_command" -f -a "start" -d 'Revert a non-permanent release, then run the permanent one in place (ExecStart)'
complete -c emqx-relup -n "__fish_emqx_relup_needs_command" -f -a "reload" -d 'Switch the running broker to the release marked current (ExecReload)'
complete -c emqx-relup -n "__fish_emqx_relup_needs_command" -f -a "hook" -d 'What package maintainer scripts call (see docs/packages.md)'
complete -c emqx-relup -n "__fish_emqx_relup_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand versions" -l root -d 'The install dir; packages are dropped into its releases/ folder' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand versions" -l state-dir -d 'Where the release store lives (releases/RELEASES and unpacked trees)' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand versions" -l config -d 'Configuration file [default: /etc/emqx/relup.toml if it exists]' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand versions" -l json -d 'Print JSON instead of the table'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand versions" -s v -l verbose -d 'Say which path a switch takes (through systemd or directly)'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand versions" -s h -l help -d 'Print help'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand root_dir" -l root -d 'The install dir; packages are dropped into its releases/ folder' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand root_dir" -l state-dir -d 'Where the release store lives (releases/RELEASES and unpacked trees)' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand root_dir" -l config -d 'Configuration file [default: /etc/emqx/relup.toml if it exists]' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand root_dir" -s v -l verbose -d 'Say which path a switch takes (through systemd or directly)'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand root_dir" -s h -l help -d 'Print help'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand status" -l root -d 'The install dir; packages are dropped into its releases/ folder' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand status" -l state-dir -d 'Where the release store lives (releases/RELEASES and unpacked trees)' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand status" -l config -d 'Configuration file [default: /etc/emqx/relup.toml if it exists]' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand status" -l json -d 'Print JSON instead of text'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand status" -s v -l verbose -d 'Say which path a switch takes (through systemd or directly)'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand status" -s h -l help -d 'Print help'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand unpack" -l root -d 'The install dir; packages are dropped into its releases/ folder' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand unpack" -l state-dir -d 'Where the release store lives (releases/RELEASES and unpacked trees)' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand unpack" -l config -d 'Configuration file [default: /etc/emqx/relup.toml if it exists]' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand unpack" -s v -l verbose -d 'Say which path a switch takes (through systemd or directly)'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand unpack" -s h -l help -d 'Print help'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand install" -l root -d 'The install dir; packages are dropped into its releases/ folder' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand install" -l state-dir -d 'Where the release store lives (releases/RELEASES and unpacked trees)' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand install" -l config -d 'Configuration file [default: /etc/emqx/relup.toml if it exists]' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand install" -l no-permanent -d 'Switch, but keep the permanent release: a restart goes back to it'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand install" -l dry-run -d 'Print the plan (steps, releases before and after) and change nothing'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand install" -l json -d 'Print one JSON object instead of the transcript (errors stay one line on stderr)'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand install" -s v -l verbose -d 'Say which path a switch takes (through systemd or directly)'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand install" -s h -l help -d 'Print help'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand upgrade" -l root -d 'The install dir; packages are dropped into its releases/ folder' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand upgrade" -l state-dir -d 'Where the release store lives (releases/RELEASES and unpacked trees)' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand upgrade" -l config -d 'Configuration file [default: /etc/emqx/relup.toml if it exists]' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand upgrade" -l no-permanent -d 'Switch, but keep the permanent release: a restart goes back to it'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand upgrade" -l dry-run -d 'Print the plan (steps, releases before and after) and change nothing'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand upgrade" -l json -d 'Print one JSON object instead of the transcript (errors stay one line on stderr)'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand upgrade" -s v -l verbose -d 'Say which path a switch takes (through systemd or directly)'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand upgrade" -s h -l help -d 'Print help'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand downgrade" -l root -d 'The install dir; packages are dropped into its releases/ folder' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand downgrade" -l state-dir -d 'Where the release store lives (releases/RELEASES and unpacked trees)' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand downgrade" -l config -d 'Configuration file [default: /etc/emqx/relup.toml if it exists]' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand downgrade" -l dry-run -d 'Print the plan (steps, releases before and after) and change nothing'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand downgrade" -l json -d 'Print one JSON object instead of the transcript (errors stay one line on stderr)'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand downgrade" -s v -l verbose -d 'Say which path a switch takes (through systemd or directly)'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand downgrade" -s h -l help -d 'Print help'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand uninstall" -l root -d 'The install dir; packages are dropped into its releases/ folder' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand uninstall" -l state-dir -d 'Where the release store lives (releases/RELEASES and unpacked trees)' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand uninstall" -l config -d 'Configuration file [default: /etc/emqx/relup.toml if it exists]' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand uninstall" -l dry-run -d 'Print the plan (steps, releases before and after) and change nothing'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand uninstall" -l json -d 'Print one JSON object instead of the transcript (errors stay one line on stderr)'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand uninstall" -s v -l verbose -d 'Say which path a switch takes (through systemd or directly)'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand uninstall" -s h -l help -d 'Print help'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand start" -l root -d 'The install dir; packages are dropped into its releases/ folder' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand start" -l state-dir -d 'Where the release store lives (releases/RELEASES and unpacked trees)' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand start" -l config -d 'Configuration file [default: /etc/emqx/relup.toml if it exists]' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand start" -l prepare -d 'Only revert and check, as root before the unit drops privileges (ExecStartPre=+); do not run the broker'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand start" -s v -l verbose -d 'Say which path a switch takes (through systemd or directly)'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand start" -s h -l help -d 'Print help'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand reload" -l root -d 'The install dir; packages are dropped into its releases/ folder' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand reload" -l state-dir -d 'Where the release store lives (releases/RELEASES and unpacked trees)' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand reload" -l config -d 'Configuration file [default: /etc/emqx/relup.toml if it exists]' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand reload" -s v -l verbose -d 'Say which path a switch takes (through systemd or directly)'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand reload" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand hook" -l root -d 'The install dir; packages are dropped into its releases/ folder' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand hook" -l state-dir -d 'Where the release store lives (releases/RELEASES and unpacked trees)' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand hook" -l config -d 'Configuration file [default: /etc/emqx/relup.toml if it exists]' -r -F
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand hook" -s v -l verbose -d 'Say which path a switch takes (through systemd or directly)'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand hook" -s h -l help -d 'Print help'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand help; and not __fish_seen_subcommand_from versions root_dir status unpack install upgrade downgrade uninstall start reload hook help" -f -a "versions" -d 'List the known releases, newest first, with their states'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand help; and not __fish_seen_subcommand_from versions root_dir status unpack install upgrade downgrade uninstall start reload hook help" -f -a "root_dir" -d 'Print the install dir, quoted'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand help; and not __fish_seen_subcommand_from versions root_dir status unpack install upgrade downgrade uninstall start reload hook help" -f -a "status" -d 'Show what runs: the broker (pid, release, since when, unit or direct), a generation still draining, and a switch an interrupted command left pending with what the next command will do with it'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand help; and not __fish_seen_subcommand_from versions root_dir status unpack install upgrade downgrade uninstall start reload hook help" -f -a "unpack" -d 'Unpack a release package without installing it'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand help; and not __fish_seen_subcommand_from versions root_dir status unpack install upgrade downgrade uninstall start reload hook help" -f -a "install" -d 'Switch to a release (either way) and make it permanent'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand help; and not __fish_seen_subcommand_from versions root_dir status unpack install upgrade downgrade uninstall start reload hook help" -f -a "upgrade" -d 'Unpack, switch to a newer patch release and make it permanent'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand help; and not __fish_seen_subcommand_from versions root_dir status unpack install upgrade downgrade uninstall start reload hook help" -f -a "downgrade" -d 'Switch to an older patch release and make it permanent'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand help; and not __fish_seen_subcommand_from versions root_dir status unpack install upgrade downgrade uninstall start reload hook help" -f -a "uninstall" -d 'Remove an old or unpacked release'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand help; and not __fish_seen_subcommand_from versions root_dir status unpack install upgrade downgrade uninstall start reload hook help" -f -a "start" -d 'Revert a non-permanent release, then run the permanent one in place (ExecStart)'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand help; and not __fish_seen_subcommand_from versions root_dir status unpack install upgrade downgrade uninstall start reload hook help" -f -a "reload" -d 'Switch the running broker to the release marked current (ExecReload)'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand help; and not __fish_seen_subcommand_from versions root_dir status unpack install upgrade downgrade uninstall start reload hook help" -f -a "hook" -d 'What package maintainer scripts call (see docs/packages.md)'
complete -c emqx-relup -n "__fish_emqx_relup_using_subcommand help; and not __fish_seen_subcommand_from versions root_dir status unpack install upgrade downgrade uninstall start reload hook help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
