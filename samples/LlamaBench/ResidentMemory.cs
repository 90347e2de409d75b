using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;

namespace LlamaBench;

/// <summary>
/// Resident memory of a process in bytes, from /proc/&lt;pid&gt;/status (Linux): VmRSS, and its file-backed part (RssFile:
/// pages of mapped files, such as weights mapped in place) and anonymous part (RssAnon: the heap, copied weights).
/// </summary>
internal sealed record ResidentMemory(long Total, long File, long Anonymous)
{
    /// <summary>This process's resident memory now; null where /proc/self/status does not exist.</summary>
    public static ResidentMemory? OfThisProcess()
    {
        long total = -1, file = -1, anonymous = -1;
        try
        {
            foreach (string line in System.IO.File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                    total = Kilobytes(line);
                else if (line.StartsWith("RssFile:", StringComparison.Ordinal))
                    file = Kilobytes(line);
                else if (line.StartsWith("RssAnon:", StringComparison.Ordinal))
                    anonymous = Kilobytes(line);
            }
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
        return total < 0 || file < 0 || anonymous < 0 ? null : new ResidentMemory(total, file, anonymous);
    }

    /// <summary>The field-by-field median of several processes' memory.</summary>
    public static ResidentMemory? Median(List<ResidentMemory> memories) => memories.Count == 0 ? null : new ResidentMemory(
        (long)Bench.Median(memories.Select(m => (double)m.Total).ToList()),
        (long)Bench.Median(memories.Select(m => (double)m.File).ToList()),
        (long)Bench.Median(memories.Select(m => (double)m.Anonymous).ToList()));

    /// <summary>"1.31 GB (1.12× the file; RssFile 0.03 GB, RssAnon 1.28 GB)": the total against <paramref name="fileBytes"/>, GB = 10^9 bytes.</summary>
    public string Describe(long fileBytes) => string.Create(CultureInfo.InvariantCulture,
        $"{Total / 1e9:F2} GB ({(double)Total / fileBytes:F2}× the file; RssFile {File / 1e9:F2} GB, RssAnon {Anonymous / 1e9:F2} GB)");

    // "VmRSS:\t  123456 kB"
    private static long Kilobytes(string line) =>
        1024 * long.Parse(line.AsSpan(line.IndexOf(':') + 1).Trim().TrimEnd("kB").Trim(), NumberStyles.None, CultureInfo.InvariantCulture);
}
