#!/usr/bin/env python3
"""Regenerates the recorded CAN scenarios in this folder from hw/vehicle.dbc.

The logs are committed; run this only after changing the DBC or a scenario:
    python3 hw/traces/generate.py
Needs cantools (pip install cantools). Each ECU sends its messages at the DBC's cycle
times with a little jitter, alive counters and checksums, as a real bus would.
"""
import os
import random

import cantools

HERE = os.path.dirname(os.path.abspath(__file__))
DB = cantools.database.load_file(os.path.join(HERE, "..", "vehicle.dbc"), strict=True)
IFACE = "can0"
EPOCH = 1764000000.0  # 2025-11-24T16:00:00Z


class Car:
    """The car's physical state; every message is encoded from it."""

    def __init__(self):
        self.locked = True
        self.lock_state = 1
        self.lock_source = 2
        self.doors_open = {"FL": 0, "FR": 0, "RL": 0, "RR": 0, "Hood": 0, "Trunk": 0}
        self.occupied = {"Driver": 0, "Passenger": 0, "Rear_Left": 0, "Rear_Center": 0, "Rear_Right": 0}
        self.belts = {"Driver": 0, "Passenger": 0, "Rear_Left": 0, "Rear_Center": 0, "Rear_Right": 0}
        self.key = 0
        self.ign = 0
        self.starter = 0
        self.engine = 0
        self.speed = 0.0
        self.direction = 0
        self.accel = 0.0
        self.yaw = 0.0
        self.lights = {"Parking_Light": 0, "Low_Beam": 0, "High_Beam": 0, "Hazard_Lights": 0,
                       "Fog_Light_Front": 0, "Fog_Light_Rear": 0, "Turn_Left": 0, "Turn_Right": 0,
                       "Daytime_Running_Light": 0}
        self.light_switch = 1
        self.windows = {"FL": 0.0, "FR": 0.0, "RL": 0.0, "RR": 0.0}
        self.sunroof = 0.0
        self.sunroof_state = 0
        self.clima = {"AC_On": 1, "Recirculation": 0, "Auto_Mode": 1, "Fan_Level": 0,
                      "Target_Temperature": 21.5, "Cabin_Temperature": 8.4, "Outside_Temperature": 6.5,
                      "Window_Heating_Front": 0, "Window_Heating_Rear": 0, "Climatisation_State": 0,
                      "Climatisation_Remaining": 0, "Climatisation_Source": 0}
        self.odometer = 23817.0
        self.fuel = 61.5
        self.range = 688
        self.crash = {"Crash_Detected": 0, "Crash_Severity": 0, "Crash_Front": 0, "Crash_Side_Left": 0,
                      "Crash_Side_Right": 0, "Crash_Rear": 0, "Crash_Rollover": 0,
                      "Airbag_Deployed_Driver": 0, "Airbag_Deployed_Passenger": 0,
                      "Airbag_Deployed_Side": 0, "Airbag_Warning_Lamp": 0, "Crash_Delta_V": 0.0}
        self.alarm_armed = 1
        self.alarm_triggered = 0
        self.alarm_source = 0
        self.buttons = {"SOS_Button": 0, "Breakdown_Button": 0, "Service_Button": 0}
        self.battery_v = 12.62
        self.battery_soc = 84
        self.awake = False
        self.counters = {}
        self.cluster_page = 0

    def counter(self, name):
        c = self.counters.get(name, 0)
        self.counters[name] = (c + 1) % 16
        return c

    def signals(self, msg):
        n = msg.name
        if n == "Airbag_01":
            s = dict(self.crash, Airbag_Counter=self.counter(n), Airbag_Checksum=0)
            data = bytearray(msg.encode(s))
            x = 0
            for b in data[:7]:
                x ^= b
            s["Airbag_Checksum"] = x
            return s
        if n == "Seat_Occupancy":
            s = {f"Occupied_{k}": v for k, v in self.occupied.items()}
            s.update({f"Belt_{k}": v for k, v in self.belts.items()})
            return s
        if n == "ESP_Speed":
            return {"ESP_Counter": self.counter(n), "Vehicle_Speed": round(self.speed, 2),
                    "Driving_Direction": self.direction, "Longitudinal_Accel": self.accel, "Yaw_Rate": self.yaw}
        if n == "Terminal_Status":
            return {"Terminal_Counter": self.counter(n), "Terminal_S": self.key, "Terminal_15": self.ign,
                    "Terminal_X": self.ign and not self.starter, "Terminal_50": self.starter,
                    "Engine_Running": self.engine}
        if n == "Door_Status":
            s = {f"Door_{k}_Open": v for k, v in self.doors_open.items() if len(k) == 2}
            s.update({"Hood_Open": self.doors_open["Hood"], "Trunk_Open": self.doors_open["Trunk"]})
            lk = 1 if self.lock_state in (1, 2) else 0
            s.update({f"Door_{k}_Locked": lk for k in ("FL", "FR", "RL", "RR")})
            s.update({"Hood_Locked": 1, "Trunk_Locked": lk, "Central_Lock_State": self.lock_state,
                      "Lock_Source": self.lock_source})
            return s
        if n == "Window_Status":
            s = {f"Window_{k}_Position": v for k, v in self.windows.items()}
            s.update({"Sunroof_Position": self.sunroof, "Sunroof_State": self.sunroof_state})
            return s
        if n == "Light_Status":
            return dict(self.lights, Light_Switch_Position=self.light_switch)
        if n == "Climate_Status":
            return dict(self.clima)
        if n == "Cluster_Info":
            page = self.cluster_page
            self.cluster_page = (page + 1) % 3
            if page == 0:
                return {"Cluster_Page": 0, "Odometer": int(self.odometer), "Fuel_Level": self.fuel,
                        "Fuel_Range": self.range, "Fuel_Reserve_Warning": 0}
            if page == 1:
                return {"Cluster_Page": 1, "Inspection_Due_Days": 212, "Inspection_Due_Distance": 11830,
                        "Service_Due_Now": 0}
            return {"Cluster_Page": 2, "Oil_Service_Due_Days": -3, "Oil_Service_Due_Distance": 420}
        if n == "Alarm_Status":
            return {"Alarm_Armed": self.alarm_armed, "Alarm_Triggered": self.alarm_triggered,
                    "Alarm_Source": self.alarm_source, "Alarm_Mode": 1}
        if n == "Roof_Module_Buttons":
            return dict(self.buttons, Roof_Counter=self.counter(n))
        if n == "Battery_12V":
            return {"Battery_Voltage": round(self.battery_v, 2), "Battery_SoC": self.battery_soc,
                    "Battery_Low_Warning": 0}
        raise KeyError(n)


SENT_BY_CAR = [m for m in DB.messages if m.senders and m.senders[0] != "TCU"]


class Recorder:
    def __init__(self, car, seed):
        self.car = car
        self.t = 0.0
        self.lines = []
        self.rng = random.Random(seed)
        self.next_due = {m.name: self.rng.uniform(0, m.cycle_time / 1000.0) for m in SENT_BY_CAR}

    def run_until(self, t_end, step=None):
        """Advance time to t_end, emitting every cyclic frame that falls due; `step` is called
        every 10 ms with the current time so that a scenario can change the car."""
        while self.t < t_end:
            if step:
                step(self.t)
            nxt = self.t + 0.01
            if self.car.awake:
                due = sorted((d, name) for name, d in self.next_due.items() if d < nxt)
                for d, name in due:
                    msg = DB.get_message_by_name(name)
                    data = msg.encode(self.car.signals(msg), strict=True)
                    self.emit(max(d, self.t), msg, data)
                    jitter = self.rng.uniform(-0.0005, 0.0005)
                    self.next_due[name] = d + msg.cycle_time / 1000.0 + jitter
            else:
                for name in self.next_due:
                    self.next_due[name] = max(self.next_due[name], nxt)
            self.t = nxt

    def emit(self, t, msg, data):
        ts = EPOCH + t
        ident = f"{msg.frame_id:08X}" if msg.is_extended_frame else f"{msg.frame_id:03X}"
        self.lines.append((ts, f"({ts:017.6f}) {IFACE} {ident}#{data.hex().upper()}"))

    def save(self, name):
        self.lines.sort(key=lambda x: x[0])
        with open(os.path.join(HERE, name), "w") as f:
            for _, line in self.lines:
                f.write(line + "\n")


def drive():
    """Unlock, enter, drive, park, lock: a short trip with a turn and a stop."""
    car = Car()
    car.odometer = 23816.9  # the trip (about 0.15 km) takes the odometer past the next kilometre
    rec = Recorder(car, seed=1)
    car.awake = False
    rec.run_until(0.5)
    # Key fob unlock wakes the bus.
    car.awake = True
    car.lock_state, car.lock_source = 0, 1
    car.alarm_armed = 0
    car.lights["Parking_Light"] = 0
    rec.run_until(3.0)
    car.doors_open["FL"] = 1
    rec.run_until(4.5)
    car.occupied["Driver"] = 1
    rec.run_until(5.5)
    car.doors_open["FL"] = 0
    rec.run_until(6.5)
    car.belts["Driver"] = 1
    car.key = 1
    rec.run_until(7.5)
    car.ign = 1
    car.lights["Daytime_Running_Light"] = 1
    car.clima.update(Fan_Level=3, Climatisation_State=1, Window_Heating_Front=1)
    rec.run_until(8.5)
    car.starter = 1
    car.battery_v = 10.8
    rec.run_until(9.3)
    car.starter, car.engine = 0, 1
    car.battery_v = 14.3
    car.lights["Low_Beam"] = 1
    rec.run_until(11.0)

    def driving(t):
        # 0 → 50 km/h in 8 s, cruise, left turn at 20-23 s, brake to 0 by 30 s.
        if t < 19.0:
            car.speed = min(50.0, (t - 11.0) * 6.25)
            car.accel = 1.71875 if car.speed < 50 else 0.0
        elif t < 24.0:
            car.speed = 50.0 - (t - 19.0) * 4.0 if t < 21.5 else 40.0
            car.accel = -1.125 if t < 21.5 else 0.0
            on = 20.0 <= t < 23.0 and int((t - 20.0) / 0.4) % 2 == 0
            car.lights["Turn_Left"] = 1 if on else 0
            car.yaw = 12.5 if 20.5 <= t < 22.5 else 0.0
        elif t < 30.0:
            car.speed = max(0.0, 40.0 - (t - 24.0) * 6.7)
            car.accel = -1.875 if car.speed > 0 else 0.0
        else:
            car.speed, car.accel = 0.0, 0.0
        car.direction = 1 if car.speed > 0 else 0
        car.odometer += car.speed / 3600.0 * 0.01
        car.fuel = max(0.0, round((61.5 - (car.odometer - 23816.9) * 0.6) * 2) / 2)
        car.clima["Cabin_Temperature"] = round(min(19.5, 8.4 + (t - 8.0) * 0.5) * 10) / 10

    rec.run_until(31.0, driving)
    car.clima.update(Fan_Level=0, Climatisation_State=0, Window_Heating_Front=0)
    car.ign, car.engine, car.key = 0, 0, 0
    car.lights["Low_Beam"] = 0
    car.lights["Daytime_Running_Light"] = 0
    car.battery_v = 12.55
    rec.run_until(32.5)
    car.belts["Driver"] = 0
    car.doors_open["FL"] = 1
    rec.run_until(34.0)
    car.occupied["Driver"] = 0
    car.doors_open["FL"] = 0
    rec.run_until(36.0)
    # Keyless lock at the door handle arms the alarm.
    car.lock_state, car.lock_source = 1, 3
    car.alarm_armed = 1
    car.lights["Hazard_Lights"] = 1
    rec.run_until(36.6)
    car.lights["Hazard_Lights"] = 0
    rec.run_until(39.0)
    car.awake = False  # the bus goes to sleep
    rec.run_until(39.5)
    rec.save("drive.log")


def alarm():
    """Parked and armed; the rear right door is forced open: the alarm goes off."""
    car = Car()
    car.awake = True
    rec = Recorder(car, seed=2)
    rec.run_until(4.0)
    car.doors_open["RR"] = 1
    car.alarm_triggered, car.alarm_source = 1, 1

    def flashing(t):
        car.lights["Hazard_Lights"] = 1 if int((t - 4.0) / 0.5) % 2 == 0 else 0

    rec.run_until(12.0, flashing)
    rec.save("alarm.log")


def crash():
    """Driving at 60 km/h with two people in front; a severe frontal crash at 10 s."""
    car = Car()
    car.awake = True
    car.lock_state, car.lock_source = 1, 5  # auto lock while driving
    car.alarm_armed = 0
    car.key, car.ign, car.engine = 1, 1, 1
    car.occupied.update(Driver=1, Passenger=1)
    car.belts.update(Driver=1, Passenger=1)
    car.lights.update(Low_Beam=1, Daytime_Running_Light=1)
    car.speed, car.direction = 60.0, 1
    car.battery_v = 14.2
    rec = Recorder(car, seed=3)

    def driving(t):
        car.odometer += car.speed / 3600.0 * 0.01

    rec.run_until(10.0, driving)

    def impact(t):
        dt = t - 10.0
        car.speed = max(0.0, 60.0 - dt * 400.0)
        car.accel = -16.0 if car.speed > 0 else 0.0
        car.direction = 1 if car.speed > 0 else 0
        if dt >= 0.03:
            car.crash.update(Crash_Detected=1, Crash_Severity=3, Crash_Front=1, Airbag_Deployed_Driver=1,
                             Airbag_Deployed_Passenger=1, Airbag_Warning_Lamp=1, Crash_Delta_V=48.5)
        if dt >= 0.2:
            # The body controller unlocks the doors and switches the hazard lights on after a crash.
            car.lock_state, car.lock_source = 0, 5
            car.engine = 0
            car.lights["Hazard_Lights"] = 1 if int(dt / 0.5) % 2 == 0 else 0

    rec.run_until(20.0, impact)
    rec.save("crash.log")


if __name__ == "__main__":
    drive()
    alarm()
    crash()
