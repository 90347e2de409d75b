using System.Globalization;
using System.Text;

namespace Llama.Compiled.Grammars;

/// <summary>Writes GBNF literals and classes.</summary>
internal static class GbnfText
{
    /// <summary>A GBNF string literal that matches exactly <paramref name="text"/>.</summary>
    public static string Literal(string text)
    {
        var sb = new StringBuilder(text.Length + 2).Append('"');
        foreach (Rune rune in text.EnumerateRunes())
            AppendChar(sb, rune.Value, inClass: false);
        return sb.Append('"').ToString();
    }

    /// <summary>A GBNF character class of <paramref name="set"/>.</summary>
    public static string Class(CodePointSet set)
    {
        var sb = new StringBuilder("[");
        foreach ((int lo, int hi) in set.Ranges)
        {
            AppendChar(sb, lo, inClass: true);
            if (hi != lo)
            {
                if (hi > lo + 1)
                    sb.Append('-');
                AppendChar(sb, hi, inClass: true);
            }
        }
        return sb.Append(']').ToString();
    }

    private static void AppendChar(StringBuilder sb, int c, bool inClass)
    {
        switch (c)
        {
            case '"': sb.Append("\\\""); return;
            case '\\': sb.Append("\\\\"); return;
            case '\n': sb.Append("\\n"); return;
            case '\r': sb.Append("\\r"); return;
            case '\t': sb.Append("\\t"); return;
        }
        if (inClass && c is '[' or ']' or '-')
        {
            sb.Append('\\').Append((char)c);
            return;
        }
        if (inClass && c == '^')
        {
            sb.Append("\\x5E");
            return;
        }
        if (c < 0x20 || c == 0x7F)
            sb.Append("\\x").Append(c.ToString("X2", CultureInfo.InvariantCulture));
        else if (c > 0xFFFF)
            sb.Append("\\U").Append(c.ToString("X8", CultureInfo.InvariantCulture));
        else if (c >= 0x80 && (char.IsControl((char)c) || char.IsWhiteSpace((char)c) || CharUnicodeInfo.GetUnicodeCategory(c) is UnicodeCategory.Format or UnicodeCategory.OtherNotAssigned or UnicodeCategory.PrivateUse or UnicodeCategory.NonSpacingMark))
            sb.Append("\\u").Append(c.ToString("X4", CultureInfo.InvariantCulture));
        else
            sb.Append((char)c);
    }
}
