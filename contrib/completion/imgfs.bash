# bash completion for imgfs. Installed as
# $datadir/bash-completion/completions/imgfs; or: source contrib/completion/imgfs.bash
#
# Commands and flags come from the binary itself (imgfs --help, imgfs CMD --help), so
# they follow the version installed; image names from `imgfs images`.

_imgfs_root_args() {  # the --root/-g given on the line, for image lookups
  local i
  for ((i = 1; i < COMP_CWORD; i++)); do
    case ${COMP_WORDS[i]} in
      --root | -g | --graph) printf '%s\n%s\n' --root "${COMP_WORDS[i + 1]}" ;;
      --root=* | --graph=*) printf '%s\n' "${COMP_WORDS[i]}" ;;
    esac
  done
}

_imgfs_images() {
  local IFS=$'\n'
  # shellcheck disable=SC2046
  imgfs $(_imgfs_root_args) images 2>/dev/null |
    awk 'NR > 1 && $1 != "<none>" { print ($2 == "<none>" ? $1 : $1 ":" $2) }'
}

_imgfs() {
  local cur prev cmd i
  cur=${COMP_WORDS[COMP_CWORD]}
  prev=${COMP_WORDS[COMP_CWORD - 1]}
  cmd=
  for ((i = 1; i < COMP_CWORD; i++)); do
    case ${COMP_WORDS[i]} in
      --root | -g | --graph) ((i++)) ;;
      -*) ;;
      *) cmd=${COMP_WORDS[i]}; break ;;
    esac
  done
  case $prev in
    --root | -g | --graph)
      COMPREPLY=($(compgen -d -- "$cur")); return ;;
    -o | --output | -i | --input)
      [[ $cmd == mount ]] && return
      COMPREPLY=($(compgen -f -- "$cur")); return ;;
    --format)
      case $cmd in
        save) COMPREPLY=($(compgen -W "docker-archive oci-archive" -- "$cur")) ;;
        ls) COMPREPLY=($(compgen -W "ls tsv" -- "$cur")) ;;
        *) COMPREPLY=($(compgen -W "table json" -- "$cur")) ;;
      esac
      return ;;
  esac
  if [[ -z $cmd ]]; then
    if [[ $cur == -* ]]; then
      COMPREPLY=($(compgen -W "--root --graph --version --help" -- "$cur"))
    else
      local cmds
      cmds=$(imgfs --help 2>/dev/null | awk '/^Commands:/ { on = 1; next } on && /^  [a-z]/ { print $1 }')
      COMPREPLY=($(compgen -W "$cmds help" -- "$cur"))
    fi
    return
  fi
  if [[ $cur == -* ]]; then
    local flags
    flags=$(imgfs "$cmd" --help 2>/dev/null | grep -oE -- '(^|[][ ,|(])--?[a-zA-Z][a-zA-Z0-9-]*' |
      sed 's/^[][ ,|(]//' | sort -u)
    COMPREPLY=($(compgen -W "$flags" -- "$cur"))
    return
  fi
  case $cmd in
    load) COMPREPLY=($(compgen -f -- "$cur")) ;;
    import)
      if [[ $prev == import ]]; then COMPREPLY=($(compgen -f -- "$cur")); fi ;;
    mount) COMPREPLY=($(compgen -d -- "$cur")) ;;
    umount)
      COMPREPLY=($(compgen -W "$(awk '$3 == "fuse.imgfs" { print $2 }' /proc/mounts 2>/dev/null)" -- "$cur")) ;;
    help) COMPREPLY=($(compgen -W "$(imgfs --help 2>/dev/null | awk '/^Commands:/ { on = 1; next } on && /^  [a-z]/ { print $1 }')" -- "$cur")) ;;
    login | logout) ;;
    pull) ;;
    *)
      local IFS=$'\n'
      COMPREPLY=($(compgen -W "$(_imgfs_images)" -- "$cur")) ;;
  esac
}
complete -F _imgfs imgfs
